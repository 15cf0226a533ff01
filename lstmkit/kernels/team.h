// team.h: the threads that share one call's loop over time, and how they split its rows and units.
//
// What it is: run_team(work, steps, B, body) runs body(rank, size) once per member. Members
// either take whole rows (split_by_rows: independent sequences, no waiting between them) or slices
// of the units of every row and meet at team_barrier() between the phases of a step (~0.2 us,
// where a fork and a join per step would cost several).
// The threads are OpenMP's (the ones ATen's own operators use: a second pool would fight them for
// the cores while they spin after each of their regions), but the work is not tied to a thread
// number: a thread the OS has given to another process (a DataLoader worker, a second job on the
// machine) starts late, and a member that waits for it waits for its time slice, milliseconds.
// - By rows, the shares are claimed: whoever has started takes the next one, so a late thread
//   finds nothing left and only the region's end waits for it to arrive, never for its work.
// - By units, every member must run at once, so the call starts with a roll call: the threads that
//   arrive within kRollCall form the team (the split follows its size); a later one skips the
//   call. A member descheduled in the middle of a call still holds the barrier.
// What it is not: a general scheduler. Nothing run in a team may call into ATen or throw.
#pragma once

#include <ATen/Parallel.h>
#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>

#include "cpu_math.h"
#include "tuning.h"

namespace lstmkit {

// One step (a cell called from Python) is worth a team from this many multiply-adds: waking the
// team costs ~5-8 us there, where a loop over time pays it once. Measured, RNN cell step, 2 threads
// against 1: B = 2-8 H = 128 (65K-262K) 1.4-1.6x slower, B = 20 H = 100 (400K) 1.2x slower, B = 1
// and 4 H = 256-512 (524K) 1.2x faster, B = 20 H = 200 (1.6M) 1.3x faster.
constexpr int64_t kOneStepTeamWork = int64_t(1) << 19;
// How long a call split by units waits for its threads to arrive (OpenMP's wake a sleeping thread
// in ~10-50 us; one that is not here by then is busy elsewhere).
constexpr std::chrono::microseconds kRollCall{200};
// A thread of a team that comes in this late (from the region's start; a sleeping one is woken in
// ~10-50 us, an idle virtual core in some hundreds) was waiting for a core another process holds:
// the scheduler's time slices are milliseconds.
constexpr int64_t kLateThreadNs = 1'000'000;                                    // 1 ms

// A barrier that spins on one shared word (sense reversal), for the few microseconds a step lasts;
// OpenMP's own barrier measured ~1 us per step more at B=1 (config A of lstmkit bench).
struct SpinBarrier {
  std::atomic<int> arrived{0}, generation{0};
  int size = 1;
  void wait() {
    if (size == 1) return;
    const int g = generation.load(std::memory_order_acquire);
    if (arrived.fetch_add(1, std::memory_order_acq_rel) == size - 1) {
      arrived.store(0, std::memory_order_relaxed);
      generation.store(g + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation.load(std::memory_order_acquire) == g; ++spins) {
      if (spins < 1 << 16) _mm_pause();
      else std::this_thread::yield();                          // a member was descheduled: let it run
    }
  }
};

inline thread_local SpinBarrier* tls_barrier = nullptr;
// The running call's split (set by Job for its members): every member splits as the call chose,
// even if the limit that chose it is set anew while the call runs.
inline thread_local bool tls_by_rows = false;

inline void team_barrier() {
  if (tls_barrier) tls_barrier->wait();
}

// Wait until ready() holds: spinning first, then yielding the core to whoever else wants it.
template <typename F>
inline void spin_until(const F& ready) {
  for (int spins = 0; !ready(); ++spins) {
    if (spins < 1 << 12) _mm_pause();
    else std::this_thread::yield();
  }
}

// One call's work, as every thread of the region sees it.
struct Job {
  void (*run)(const void* body, int rank, int size);
  const void* body;
  int size;                                  // members wanted (by rows: shares)
  bool by_rows;
  static constexpr int kClosed = 1 << 20;
  std::atomic<int> next{0};                  // the next rank to hand out (by units: 1, the first has 0)
  std::atomic<bool> go{false};               // by units: the roll call is over, team_size is set
  int team_size = 1;
  int64_t start_ns = 0;                      // when the region was asked for (steady_ns)
  std::atomic<int64_t> arrived_ns{0};        // when the last of the other threads came in
  SpinBarrier barrier;

  // The first thread's part: by rows a thread like the others; by units it calls the roll (waiting
  // at most kRollCall for the others), then runs rank 0 of the team that came.
  void lead() {
    if (by_rows) return shares();
    const auto until = std::chrono::steady_clock::now() + kRollCall;
    spin_until([&] { return next.load() >= size || std::chrono::steady_clock::now() > until; });
    team_size = std::min(next.exchange(kClosed), size);       // who came; later ones skip the call
    barrier.size = team_size;
    go.store(true, std::memory_order_release);
    tls_barrier = &barrier;
    tls_by_rows = false;
    run(body, 0, team_size);
    tls_barrier = nullptr;
  }

  // By rows: shares until none is left (the region's end waits for shares in progress).
  void shares() {
    tls_by_rows = true;
    for (int r; (r = next.fetch_add(1)) < size;) run(body, r, size);
    tls_by_rows = false;
  }

  // Any other thread's part: shares; or, by units, a rank if the roll call is open.
  void help() {
    const int64_t now = steady_ns();
    for (int64_t seen = arrived_ns.load(); now > seen && !arrived_ns.compare_exchange_weak(seen, now);) continue;
    if (by_rows) return shares();
    const int r = next.fetch_add(1);
    if (r >= size) return;                                   // the roll call is over
    spin_until([&] { return go.load(std::memory_order_acquire); });
    tls_barrier = &barrier;
    tls_by_rows = false;
    run(body, r, team_size);
    tls_barrier = nullptr;
  }
};

// Member rank's share [lo, hi) of n units, cut at whole vectors (kLanes units). Cut at whole panels
// (kPanel), the shares of H = 300 were 192 and 108 units, of H = 650 384 and 266: the larger share
// sets the step's time (1.2-1.3x the even split's). A panel cut in two costs each member one
// narrower pass over it.
template <typename T>
inline std::pair<int64_t, int64_t> team_slice(int64_t n, int rank, int size) {
  constexpr int64_t L = kLanes<T>;
  const int64_t per = ((n + L - 1) / L + size - 1) / size * L;
  return {std::min(n, rank * per), std::min(n, (rank + 1) * per)};
}

// How a team shares one call's B rows and H units (P projected columns). Rows are independent
// sequences, so where each member gets enough rows it takes whole rows, all units: no barrier per
// step and no h_{t-1} crossing between cores (that crossing measured 8% of config B's time), at
// the price of every member reading all of W each step. With few rows, members take slices of
// the units of every row and meet once a step. Either way each output element is the same sum in
// the same order, so results do not depend on the split or the thread count (one row aside: one
// thread packs W, a team takes dot products; cpu_math.h's pack_one_row).
// Split by units, the vectors of units rarely divide evenly (H = 200: 13 vectors, 7 and 6; H = 300:
// 10 and 9), and the member with more sets every step's time. Where the caller takes a tail, each
// member takes an equal number of whole vectors [j0, j1) of every row, and the vectors left over,
// units [t0, t1), are shared by rows: rows [tb0, tb1) of them are this member's (parts() gives
// both). Measured, LSTM inference, 2 threads, B = 8, T = 50, time over nn.LSTM's, before the tail:
// H = 192 (12 vectors) 0.92, 200 (13) 0.99, 208 (13) 0.94, 288 (18) 0.85, 300 (19) 1.00, 320 (20) 0.98.
struct Split {
  bool by_rows;
  int64_t b0, b1, j0, j1, p0, p1;
  int64_t t0 = 0, t1 = 0, tb0 = 0, tb1 = 0;      // the tail's units (every member's) and this member's rows of it

  // f(first row, end row, first unit, end unit) for each part of the rows and units this member owns
  template <typename F>
  void parts(const F& f) const {
    if (j1 > j0) f(b0, b1, j0, j1);
    if (t1 > t0 && tb1 > tb0) f(tb0, tb1, t0, t1);
  }
};

// Whether a team of size members takes whole rows (see Split): from limit(kRowsPerMember) rows a
// member (tuning.h; default 2). By rows no member waits for another and nothing crosses between the
// cores each step; by units each member reads only its share of W but meets the others at a barrier
// every step and reads the h_{t-1} they wrote. Which wins depends on that crossing, and on a shared
// machine its cost moves: here the round trip between the two cores is ~80 ns or ~340 ns and
// switches every few minutes. Measured, 2 threads, LSTM inference, T = 50, I = H, time over
// nn.LSTM's, by units / by rows, fast state: B = 4 H = 128-300 0.88-1.18 / 0.82-1.03, H = 512-1000
// 0.62-1.09 / 0.56-1.08; B = 6-8 H = 256-650 0.96-1.13 / 0.99-1.07; slow state: B = 4 H = 300
// 1.13-1.24 / 0.88-0.98, B = 8 H = 300 1.15-1.21 / 0.92-0.99, H = 512 1.03-1.10 / 1.01-1.07. By rows
// is never much behind and never far behind torch, by units is up to 1.24: rows from 2 a member.
// One row a member (B = 2) stays by units (0.76-0.95 / 0.82-1.14: a pass of one row is slow).
// With a core busy elsewhere, by units also waits at the barrier for a descheduled member (README: --busy).
// Also (where a machine measured kRowsPerMember higher) by rows from kRowsFromL2 rows a member where
// the recurrent weights (weight_bytes, 0: not given) fit in 3/4 of one core's L2 (the rest for the step's x, h and gates): reading all of W
// each step then costs little more, and no member waits at a barrier. Measured, 2 threads, B = 8,
// T = 50, time over nn.LSTM's, by rows / by units: H = 100 0.65 / 0.93, 128 0.97 / 1.00, 160 0.99 /
// 1.08, 200 (W_hh 640 KB) 0.98 / 1.11 (T = 2000: 0.80 / 1.09); H = 256 (1 MB, one whole L2 here)
// 1.16-1.22 / 1.00, 300 1.09 / 0.99, 512 1.17 / 0.95.
// But never by rows where the copies of the weights its members read each step (size x
// weight_bytes) pass 3/8 of the cache the cores share (cpu_math.h's shared_cache_share, which
// lstm_cpu.cpp's fused input part keeps to too): by units the team reads one copy. On a shared
// machine the L3 is also the other tenants', and there by rows could take twice torch.nn's time.
// Measured, 2 threads, LSTM inference, T = 50, time over nn.LSTM's, by rows / by units, in one
// process: B = 20 I = 300 H = 650 (W_hh 6.8 MB, two copies 13.6) 0.85 / 0.87, and an hour later
// 1.19-1.43 / 0.96 (the grid: 0.76-1.64 from run to run); B = 20 H = 1000 0.96 / 0.92; B = 64 H = 650
// 1.01 / 1.01; T = 18 B = 256 H = 650 1.07 / 1.11; under the limit H = 512 (two copies 8.4 MB) B = 20
// 0.81 / 0.96, H = 300 B = 20 0.79 / 1.09.
constexpr int64_t kRowsFromL2 = 4;
inline bool split_by_rows(int64_t B, int size, int64_t weight_bytes = 0) {
  if (size <= 1 || size * weight_bytes > shared_cache_share()) return false;
  return B >= limit(kRowsPerMember, size) * size ||
         (weight_bytes > 0 && B >= kRowsFromL2 * size && weight_bytes <= cache_bytes(2) / 4 * 3);
}

// tail: share the vectors left over by rows (see Split; the caller runs its steps through
// Split::parts), where there are rows enough for every member to take one.
template <typename T>
inline Split team_split(int64_t B, int64_t H, int64_t P, int rank, int size, bool tail = false) {
  if (size > 1 && tls_by_rows) {
    const int64_t per = (B + size - 1) / size;
    return {true, std::min(B, rank * per), std::min(B, (rank + 1) * per), 0, H, 0, P};
  }
  const auto [p0, p1] = team_slice<T>(P, rank, size);
  constexpr int64_t L = kLanes<T>;
  const int64_t vectors = (H + L - 1) / L, each = vectors / size;
  if (!tail || size == 1 || vectors % size == 0 || B < size) {
    const auto [j0, j1] = team_slice<T>(H, rank, size);
    return {false, 0, B, j0, j1, p0, p1};
  }
  Split sp{false, 0, B, rank * each * L, (rank + 1) * each * L, p0, p1};
  sp.t0 = size * each * L, sp.t1 = H;
  sp.tb0 = B * rank / size, sp.tb1 = B * (rank + 1) / size;
  return sp;
}


// One team for a whole loop over time (work: multiply-adds per step, steps: how many, B: rows,
// weight_bytes: the recurrent weights' size, see split_by_rows):
// body(rank, size) runs once per member, or by rows (split_by_rows) once per share, on whichever
// thread claims it. Without OpenMP, inside another parallel region, or while another process keeps
// a core busy (cpu_math.h's cores_busy), the team is the calling thread.
// units_only: never by rows (one step, where by rows would save no barrier and each member would
// read all of the weights).
template <typename F>
inline void run_team(int64_t work, int64_t steps, int64_t B, const F& body, int64_t weight_bytes = 0,
                     bool units_only = false) {
  const int n = team_threads(work, steps);
#ifdef _OPENMP
  if (n > 1 && !at::in_parallel_region() && !omp_in_parallel() && !cores_busy()) {
    Job job;
    job.start_ns = steady_ns();
    job.run = [](const void* b, int rank, int size) { (*static_cast<const F*>(b))(rank, size); };
    job.body = &body;
    job.size = n;
    job.by_rows = !units_only && split_by_rows(B, n, weight_bytes);
    job.next = job.by_rows ? 0 : 1;
#pragma omp parallel num_threads(n)
    {
      if (omp_get_thread_num() == 0) job.lead();
      else job.help();
    }
    // the region ended only when its last thread came in: late by kLateThreadNs, another process
    // may hold its core (cpu_math.h's note_late_thread)
    if (job.arrived_ns.load() - job.start_ns > kLateThreadNs) note_late_thread();
    return;
  }
#endif
  body(0, 1);
}

}  // namespace lstmkit
