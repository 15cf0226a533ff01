// cpu_math.h: the scalar building blocks of the CPU recurrences, written so the compiler
// vectorizes them (plain branch-free loops, -O3 -march=native).
//
// What it is: exp / sigmoid / tanh accurate to a few ulp in float and double; a small matrix
// product `out[b, n] = init + sum_k x[b, k] * A[k, n]` for the rows of one time step, where calling
// a BLAS per step costs more than the arithmetic (and repacks the weights every time); and the
// split of a step's hidden units over threads.
// What it is not: a BLAS. Large batches go to ATen's GEMM (MKL / oneDNN).
// References: Cody & Waite range reduction for exp; tanh(x) = (1 - e^{-2|x|}) / (1 + e^{-2|x|}),
// with its Taylor series near 0 where that quotient cancels.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <utility>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <type_traits>

#include "tuning.h"

namespace lstmkit {

template <typename T> struct ExpConst;
template <> struct ExpConst<float> {
  using int_t = int32_t;
  static constexpr int degree = 6;       // |r|^7 / 7! < 1.3e-7 at |r| = ln2/2: about an ulp
  // hi keeps n <= 127: at 88.7, n = 128 and 2^n alone overflows to inf though e^x does not, and
  // 1 / (1 + inf) by a reciprocal estimate and a Newton step is 0 * inf = NaN
  static constexpr float lo = -87.3f, hi = 88.0f;
  static constexpr int bias = 127, mant = 23;
};
template <> struct ExpConst<double> {
  using int_t = int64_t;
  static constexpr double lo = -708.0, hi = 709.0;
  static constexpr int bias = 1023, mant = 52;
  static constexpr int degree = 13;
};

// The size of a cache level as Linux reports it for cpu0 (/sys/devices/system/cpu/cpu0/cache:
// "32768K"), in bytes; 0 where it does not say.
inline int64_t sysfs_cache_bytes(int level) {
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), type_file(dir + "type"), size_file(dir + "size");
    int l = 0;
    std::string type, size;
    if (!(level_file >> l) || !(type_file >> type) || !(size_file >> size) || l != level || type == "Instruction")
      continue;
    int64_t n = 0;
    size_t k = 0;
    for (; k < size.size() && size[k] >= '0' && size[k] <= '9' && n < (int64_t(1) << 40); ++k)
      n = n * 10 + (size[k] - '0');
    const char unit = k < size.size() ? size[k] : ' ';
    return unit == 'K' ? n << 10 : unit == 'M' ? n << 20 : unit == 'G' ? n << 30 : n;
  }
  return 0;
}

// The cache of one core at level 2, or the one the cores share at level 3, in bytes, as the CPU
// reports it (level 2 by sysconf, else 1 MiB, what most x86 cores have had since 2017; level 3 by
// Linux's sysfs first, where glibc's sysconf said 320 MiB for this machine's 32 MiB, else sysconf,
// else 0: none known). Paths and blockings that depend on what stays in cache read these, not
// constants measured on one machine.
inline int64_t cache_bytes(int level) {
  static const int64_t l2 = [] { const long v = sysconf(_SC_LEVEL2_CACHE_SIZE); return v > 0 ? int64_t(v) : int64_t(1) << 20; }();
  static const int64_t l3 = [] {
    const int64_t s = sysfs_cache_bytes(3);
    const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return s > 0 ? s : (v > 0 ? int64_t(v) : int64_t(0));
  }();
  return level == 2 ? l2 : l3;
}

// The part of the shared cache one call's streamed weights may take each step: 3/8 of it (the rest
// is the other tenants' on a shared machine, and the step's inputs and outputs). Measured on a Zen 3
// EPYC (32 MB of L3): lstm_cpu.cpp's fused input part and team.h's split by rows.
inline int64_t shared_cache_share() { return cache_bytes(3) / 8 * 3; }

// A core that another process keeps busy: a thread of the call that is not running holds all of
// it (a team by units waits for it at the roll call and at every step's barrier, and an OpenMP
// region ends only when each of its threads has arrived), where the scheduler gives it the core
// back only every few milliseconds. Measured, 2 threads with another process spinning, 20 steps of
// a cell from Python, time over torch.nn's on 2 threads, lstmkit on 2 threads / on 1 (10 rounds,
// median): RNNCell B = 20 H = 200 training 0.87 / 0.39, LSTMCell 0.70 / 0.29, RNNCell B = 64
// H = 650 inference 0.74 / 0.43 (the worst round on 2 threads 1.03, 1.89, 1.65). So a thread found
// late (team.h: coming into a team's region kLateThreadNs after it began) a second time within
// kBusyBackoffNs marks the cores busy (one late thread alone may be an idle virtual core slow to
// wake), and for kBusyBackoffNs every team (run_team, the bidirectional pair) and every loop of
// the kernels' own (parallel_rows) runs on the calling thread alone; the calls after that try their
// threads again. Results do not change: every hand-written path gives the same bits on one thread
// as on several (tests/test_busy_cores.py), and the BLAS calls choose their threads themselves.
constexpr int64_t kBusyBackoffNs = 100'000'000;                                // 100 ms
inline std::atomic<int64_t> busy_until_ns{0};
inline std::atomic<int64_t> late_thread_ns{-kBusyBackoffNs};                    // the last late thread

inline int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline bool cores_busy() { return steady_ns() < busy_until_ns.load(std::memory_order_relaxed); }
inline void mark_cores_busy() { busy_until_ns.store(steady_ns() + kBusyBackoffNs, std::memory_order_relaxed); }
inline void clear_cores_busy() {
  busy_until_ns.store(0, std::memory_order_relaxed);
  late_thread_ns.store(-kBusyBackoffNs, std::memory_order_relaxed);
}
// A thread came into a team's region late: the second within kBusyBackoffNs marks the cores busy.
inline void note_late_thread() {
  const int64_t now = steady_ns();
  if (now - late_thread_ns.exchange(now, std::memory_order_relaxed) < kBusyBackoffNs) mark_cores_busy();
}

// at::parallel_for(begin, end, grain, f), or f(begin, end) on the calling thread while the cores are
// busy (cores_busy).
template <typename F>
inline void parallel_rows(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (!cores_busy()) return at::parallel_for(begin, end, grain, f);
  if (begin < end) f(begin, end);
}

// 1 / k!, the Taylor coefficients of e^r, as a table built at compile time: a constexpr function
// called with a loop's k is not folded unless the loop is unrolled, and the double polynomial's
// (degree 13) was not: each coefficient was a recursive call at run time, and float64 cell math
// ran 3-6x slower than float32 (RNN, B = 20, H = 100: 33 us a step against 5.7).
struct InvFactorials {
  double v[16];
  constexpr InvFactorials() : v() {
    v[0] = 1.0;
    for (int k = 1; k < 16; ++k) v[k] = v[k - 1] / k;
  }
};
inline constexpr InvFactorials kInvFact{};
constexpr double inv_fact(int k) { return kInvFact.v[k]; }

// exp(x) = 2^n * e^r, n = round(x / ln2), |r| <= ln2/2; e^r by its Taylor polynomial.
template <typename T>
inline T exp_(T x) {
  using C = ExpConst<T>;
  x = std::min(std::max(x, T(C::lo)), T(C::hi));
  const T n = __builtin_floor(x * T(1.4426950408889634) + T(0.5));
  const T r = (x - n * T(0.693145751953125)) - n * T(1.428606820309417232e-06);   // ln2 hi + lo
  T p = T(inv_fact(C::degree));
#pragma GCC unroll 16
  for (int k = C::degree - 1; k >= 0; --k) p = p * r + T(inv_fact(k));   // Horner on sum r^k / k!
  const typename C::int_t bits = (static_cast<typename C::int_t>(n) + C::bias) << C::mant;
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return p * scale;
}

template <typename T>
inline T sigmoid_(T x) { return T(1) / (T(1) + exp_(-x)); }

// tanh: the quotient form away from 0, the odd Taylor series for |x| < 1/16 (no cancellation).
template <typename T>
inline T tanh_(T x) {
  const T a = x < T(0) ? -x : x;
  const T e = exp_(T(-2) * a);
  const T q = (T(1) - e) / (T(1) + e);
  const T x2 = x * x;
  const T s = x * (T(1) + x2 * (T(-1.0 / 3) + x2 * (T(2.0 / 15) + x2 * (T(-17.0 / 315) + x2 * (
      T(62.0 / 2835) + x2 * (T(-1382.0 / 155925) + x2 * (T(21844.0 / 6081075))))))));
  return a < T(0.0625) ? s : (x < T(0) ? -q : q);
}

// One vector register of the CPU the kernel is built for (-march=native), GCC/Clang vector
// extension: 64 bytes with AVX-512, 32 with AVX/AVX2, 16 elsewhere (SSE, NEON). A vector wider than
// the registers is not split into registers but spilled through the stack piece by piece: with
// 64-byte vectors an AVX2 build ran the step product at 3-4 GFLOP/s on one core, ~30x below the
// same CPU's AVX2 peak.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
template <typename T> struct Vec { typedef T type __attribute__((vector_size(kVectorBytes))); };
template <typename T> using vec_t = typename Vec<T>::type;
template <typename T> constexpr int64_t kLanes = kVectorBytes / sizeof(T);
template <typename T> inline vec_t<T> load(const T* p) { vec_t<T> v; std::memcpy(&v, p, sizeof v); return v; }
template <typename T> inline void store(T* p, vec_t<T> v) { std::memcpy(p, &v, sizeof v); }

// a b + c in one rounding, lane by lane, with the FMA instruction where the CPU has one. The kernels
// are built with -ffp-contract=off (kernels/__init__.py): GCC contracted a * b + c into an FMA or
// not by its tuning for the CPU and the function around it (for AMD Zen 3 an accumulator's chain was
// a multiply and an add in one function and FMAs in another), where the same sum taken in two places
// must round alike (gemv_dot's groups, a team's cuts). The FMAs wanted are written with this.
template <typename T>
inline vec_t<T> fmadd(vec_t<T> a, vec_t<T> b, vec_t<T> c) {
  if constexpr (kVectorBytes == 64) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) return (vec_t<T>)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
    else return (vec_t<T>)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#endif
  } else if constexpr (kVectorBytes == 32) {
#if defined(__FMA__)
    if constexpr (std::is_same_v<T, float>) return (vec_t<T>)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
    else return (vec_t<T>)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#endif
  } else {
#if defined(__FMA__)
    if constexpr (std::is_same_v<T, float>) return (vec_t<T>)_mm_fmadd_ps((__m128)a, (__m128)b, (__m128)c);
    else return (vec_t<T>)_mm_fmadd_pd((__m128d)a, (__m128d)b, (__m128d)c);
#endif
  }
  return a * b + c;                                 // no FMA instruction: nothing to contract into
}

// x in every lane. Written x - 0, not 0 + x: with signed zeros 0 + x is not x (0 + -0 = +0), so
// GCC kept that add (one more operation for each row of x in the step product's inner loop), while
// x - 0 is x for every x and folds away: a plain broadcast.
template <typename T>
inline vec_t<T> broadcast(T x) { return x - vec_t<T>{}; }

// The first m < kLanes lanes of a vector at p, the others zero, and their store: the ragged end of
// a row (H = 100 or 200 leaves one in every gate), so it too runs as one vector, not m scalar loops.
// A masked load or store (AVX-512's masks, AVX2's vmaskmov), which touches (and may fault on) only
// the m lanes; elsewhere a copy of m elements (on AVX2 a memcpy of m was a library call for every
// k of a ragged pass: 17 G multiply-adds a second where whole vectors ran 60).
#if defined(__AVX2__) && !defined(__AVX512F__)
template <typename T>
inline __m256i lane_mask(int64_t m) {                       // lanes below m all ones
  if constexpr (std::is_same_v<T, float>)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(m)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  else
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(m), _mm256_setr_epi64x(0, 1, 2, 3));
}
#endif
template <typename T>
inline vec_t<T> load_n(const T* p, int64_t m) {
#if defined(__AVX512F__)
  const auto mask = static_cast<__mmask16>((1u << m) - 1);
  if constexpr (std::is_same_v<T, float>) return (vec_t<T>)_mm512_maskz_loadu_ps(mask, p);
  else return (vec_t<T>)_mm512_maskz_loadu_pd(static_cast<__mmask8>(mask), p);
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) return (vec_t<T>)_mm256_maskload_ps(p, lane_mask<T>(m));
  else return (vec_t<T>)_mm256_maskload_pd(p, lane_mask<T>(m));
#else
  vec_t<T> v{};
  std::memcpy(&v, p, m * sizeof(T));
  return v;
#endif
}
template <typename T>
inline void store_n(T* p, vec_t<T> v, int64_t m) {
#if defined(__AVX512F__)
  const auto mask = static_cast<__mmask16>((1u << m) - 1);
  if constexpr (std::is_same_v<T, float>) _mm512_mask_storeu_ps(p, mask, (__m512)v);
  else _mm512_mask_storeu_pd(p, static_cast<__mmask8>(mask), (__m512d)v);
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) _mm256_maskstore_ps(p, lane_mask<T>(m), (__m256)v);
  else _mm256_maskstore_pd(p, lane_mask<T>(m), (__m256d)v);
#else
  std::memcpy(p, &v, m * sizeof(T));
#endif
}

// The register block of the step product: up to kMaxRows rows of x by kPanelVectors vectors of
// columns, the accumulators in registers with the loaded vectors of A and a broadcast of x beside
// them. AVX-512 has 32 registers: 8 x 4 accumulators. AVX2, SSE (16 registers): 6 x 2, A's two
// vectors loaded into registers once per k (kLoadA). Measured on one core (GFLOP/s of the product,
// a panel of K = 128 or 512 from L2), AVX-512 (an AMD EPYC with it, H = 200-512): 8, 7 or 5 rows a
// pass 113-116, 4 rows 92, 2 rows 85; 4 x 4 blocks where 8 x 4 fit (B = 8) 86 against 114. AVX2 (an
// AMD EPYC without AVX-512, Zen 3): 6 x 2 94-100, 5 x 2 91-100, 4 x 2 88-99, 3 x 2 71-76, 2 x 2 51-53;
// 4 x 3 93-100 with A's vectors in registers but 50-73 as GCC compiled it (each FMA reloading A
// from memory: 16 loads for 12 multiply-adds, where the core issues 2 vector loads a cycle).
#if defined(__AVX512F__)
constexpr int kMaxRows = 8;
constexpr int kPanelVectors = 4;
constexpr bool kLoadA = false;        // 32 accumulators fill the registers: A is an FMA's memory operand
#else
constexpr int kMaxRows = 6;
constexpr int kPanelVectors = 2;
constexpr bool kLoadA = true;         // 12 accumulators, 2 vectors of A and a broadcast: 15 of 16
#endif

// Columns of A per panel: the width of the register block.
template <typename T> constexpr int64_t kPanel = kPanelVectors * kLanes<T>;

// R rows of out[r, n0:n1] = (init ? init[r, n0:n1] : 0) + sum_k x[r, k] * A[k, n0:n1]; the
// accumulators (R rows x NV vectors) stay in registers, each loaded column of A serves R rows.
// Column n of A's row k at A + (n / kPanel) ps + k lda + n % kPanel (small_gemm's layout); a pass of
// more vectors than one panel has starts at a panel's first column (n0 there; every pass is then
// whole panels wide), one of fewer stays inside a panel. Each output is init plus one chain of
// FMAs in the order of k, whatever NV, R or the pass it is taken in.
// Never inlined: inlined into its callers, GCC allocated the same loop's registers differently in
// each (the same 6 x 4 block ran at 86 or 110 GFLOP/s depending on the function around it).
template <typename T, int R, int NV>
__attribute__((noinline)) void gemm_rows(T* out, int64_t ldo, const T* init, int64_t ldi, const T* x, int64_t ldx,
                                         const T* A, int64_t lda, int64_t ps, int64_t K, int64_t n0, int64_t n1) {
  using V = vec_t<T>;
  constexpr int64_t L = kLanes<T>, NP = kPanel<T>, PV = kPanelVectors;
  auto column = [&](int64_t n) { return A + n / NP * ps + n % NP; };            // (0, n)
  int64_t n = n0;
  for (; n + NV * L <= n1; n += NV * L) {
    const T* a = column(n);
    V acc[R][NV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = init ? load(init + r * ldi + n + v * L) : V{};
    for (int64_t k = 0; k < K; ++k) {
      const T* ak = a + k * lda;
      V av[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        av[v] = load(ak + v / PV * ps + v % PV * L);
        if constexpr (kLoadA && R > 1) asm("" : "+x"(av[v]));                 // keep it in a register
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const V xr = broadcast(x[r * ldx + k]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = fmadd<T>(av[v], xr, acc[r][v]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) store(out + r * ldo + n + v * L, acc[r][v]);
  }
  if constexpr (NV > 1) {                                      // what is left, half as wide
    gemm_rows<T, R, NV / 2>(out, ldo, init, ldi, x, ldx, A, lda, ps, K, n, n1);
    return;
  }
  if (n < n1) {                                                // the ragged end: one vector, m lanes
    const int64_t m = n1 - n;
    const T* a = column(n);
    V acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = init ? load_n(init + r * ldi + n, m) : V{};
    for (int64_t k = 0; k < K; ++k) {
      const V av = load_n(a + k * lda, m);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r] = fmadd<T>(av, broadcast(x[r * ldx + k]), acc[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) store_n(out + r * ldo + n, acc[r], m);
  }
}

// Vectors a pass of one or two rows takes (small_gemm): several panels at once. A pass of one row
// over one panel is kPanelVectors chains of FMAs, each FMA waiting on the last of its chain (4
// cycles on AMD Zen 3, two issued a cycle). Measured, one core, Zen 3 (AVX2, panels of 2 vectors),
// GFLOP/s of one or two rows by 2048 columns (panels from L3, K = 128 and 512): 1 x 2 vectors 24-26,
// 1 x 4 35-38, 1 x 8 32-36 (bound by reading A); 2 x 2 42-47, 2 x 4 46-59. (2 x 8 would want 16
// accumulators, all of AVX2's registers.) AVX-512 (panels of 4 vectors): two panels.
constexpr int kWideVectors = kVectorBytes == 64 ? 8 : 4;

// The groups of rows small_gemm passes over each block of the weights together: as few groups as
// kMaxRows allows, of sizes as equal as can be (AVX-512: B = 20 as 6, 7, 7; B = 9 as 4, 5), since a group of
// few rows loads a vector of A for few multiply-adds (measured: 6/4/2/1 rows at a time, B = 20,
// H = 512, 100 GFLOP/s; 6, 7, 7 115). f(first row, rows) for each group in order.
template <typename F>
inline void for_each_row_group(int64_t B, const F& f) {
  const int64_t groups = (B + kMaxRows - 1) / kMaxRows;
  for (int64_t g = 0, b = 0; g < groups; ++g) {
    const int64_t rows = (B - b) / (groups - g);
    f(b, rows);
    b += rows;
  }
}

// f(std::integral_constant<int, rows>) for rows in 1 .. kMaxRows.
template <int R = 1, typename F>
inline void with_rows(int64_t rows, const F& f) {
  if constexpr (R <= kMaxRows) {
    if (rows == R) return f(std::integral_constant<int, R>{});
    with_rows<R + 1>(rows, f);
  }
}

// out[b, n0:n1] = (init ? init[b, n0:n1] : 0) + sum_k x[b, k] * A[k, n0:n1], for b < B.
// A (K, N) is read in panels of kPanel columns: element (k, n) at A + (n / kPanel) * ps + k * lda
// + n % kPanel. Row-major A is lda = N, ps = kPanel; panel-packed A (pack_panels) is lda = kPanel,
// ps = K * kPanel, where a panel is contiguous: its rows do not collide in L1 the way rows 4 KiB
// apart do. Cache blocking: kKc rows of a panel (a quarter of one core's L2) stay in L2 while
// every group of rows of x (for_each_row_group) passes over them; after the first K block the panel
// accumulates into out (every element's sum is taken in the same order whatever the blocks). Blocks
// the size of L1 (128 rows here) were 3-5% slower: each block stores and reloads the accumulators,
// and the panel streams from L2 fast enough. reverse: the panels last to first (same results; see
// StepWeight::product for why).
template <typename T>
inline void small_gemm(T* out, int64_t ldo, const T* init, int64_t ldi, const T* x, int64_t ldx,
                       const T* A, int64_t lda, int64_t ps, int64_t B, int64_t K, int64_t n0, int64_t n1,
                       bool reverse = false) {
  constexpr int64_t NP = kPanel<T>;
  static const int64_t kKc = std::max<int64_t>(16, cache_bytes(2) / 4 / static_cast<int64_t>(NP * sizeof(T)));
  auto panel = [&](int64_t n, int64_t ne) {                                     // columns [n, ne) of one panel
    const int64_t p = n / NP, w = ne - n;
    const T* ap = A + p * ps + (n - p * NP);                                     // (k, n) at ap + k * lda
    for (int64_t k = 0; k < std::max<int64_t>(K, 1); k += kKc) {
      const int64_t kc = std::min(kKc, K - k);
      const T* a = ap + k * lda;
      const bool first = k == 0;
      auto src = [&](int64_t b) { return first ? (init ? init + b * ldi + n : nullptr) : out + b * ldo + n; };
      const int64_t ldsrc = first ? ldi : ldo;
      for_each_row_group(B, [&](int64_t b, int64_t rows) {
        with_rows(rows, [&](auto R) {
          gemm_rows<T, decltype(R)::value, kPanelVectors>(out + b * ldo + n, ldo, src(b), ldsrc, x + b * ldx + k,
                                                          ldx, a, lda, ps, kc, 0, w);
        });
      });
    }
  };
  if (B >= 1 && B <= 2) {                                                      // several panels a pass
    with_rows(B, [&](auto Rc) {
      constexpr int R = decltype(Rc)::value;
      constexpr int64_t W = kWideVectors * kLanes<T>;                         // whole panels
      auto pass = [&](int64_t n, int64_t ne) {         // [n, ne): inside one panel, or from a panel's start
        gemm_rows<T, R, kWideVectors>(out + n, ldo, init ? init + n : nullptr, ldi, x, ldx,
                                         A + n / NP * ps + n % NP, lda, ps, K, 0, ne - n);
      };
      const int64_t head = std::min(n1, (n0 + NP - 1) / NP * NP);              // n0 up to a panel's start
      const int64_t passes = (n1 - head + W - 1) / W;
      if (!reverse && head > n0) pass(n0, head);
      for (int64_t i = 0; i < passes; ++i) {
        const int64_t n = head + (reverse ? passes - 1 - i : i) * W;
        pass(n, std::min(n1, n + W));
      }
      if (reverse && head > n0) pass(n0, head);
    });
    return;
  }
  if (!reverse) {
    for (int64_t n = n0; n < n1;) {
      const int64_t ne = std::min(n1, (n / NP + 1) * NP);
      panel(n, ne);
      n = ne;
    }
  } else {
    for (int64_t ne = n1; ne > n0;) {
      const int64_t n = std::max(n0, (ne - 1) / NP * NP);
      panel(n, ne);
      ne = n;
    }
  }
}

// The lanes of NR accumulators (one per output) summed, in NR / kLanes vectors (one where NR <=
// kLanes: output r in lane r). Each output's partial sums are halved by one fixed tree, lane i with
// lane i + w/2 of its segment of w lanes (w = kLanes, kLanes/2, ..., 2), whether it is folded with
// seven others or alone (then with a copy of itself): so an output's value does not depend on the
// group it was taken in. A stage takes two vectors of segments w wide to one of segments w/2 wide,
// the first vector's outputs before the second's.
template <typename T, int64_t W, size_t... I>
inline vec_t<T> fold_pair(vec_t<T> a, vec_t<T> b, std::index_sequence<I...>) {
  constexpr int64_t h = W / 2;                                  // lane i of the result: segment i / h, half-lane i % h
  return __builtin_shufflevector(a, b, static_cast<int>(I / h * W + I % h)...) +
         __builtin_shufflevector(a, b, static_cast<int>(I / h * W + I % h + h)...);
}

template <typename T, int64_t W, int NR>
inline void fold_lanes(vec_t<T>* v) {
  if constexpr (W > 1) {
    constexpr int64_t L = kLanes<T>;
    if constexpr (NR * W / L >= 2) {                              // vectors now: NR W / L, then half as many
      for (int i = 0; i < NR * W / L / 2; ++i) v[i] = fold_pair<T, W>(v[2 * i], v[2 * i + 1], std::make_index_sequence<L>{});
    } else {
      v[0] = fold_pair<T, W>(v[0], v[0], std::make_index_sequence<L>{});
    }
    fold_lanes<T, W / 2, NR>(v);
  }
}

// out[n] = (init ? init[n] : 0) + W[n, :] . x for NR rows of W from n: lane l of a row's
// accumulator takes x[k] W[n, k] for the k of that lane, whole vectors in order, the ragged end of K
// as one masked vector (zeros past K); then fold_lanes. The same sum for every row, whichever NR it
// is taken with. Never inlined (see gemm_rows).
template <typename T, int NR>
__attribute__((noinline)) void dot_rows(T* out, const T* init, const T* x, const T* W, int64_t ldw, int64_t K, int64_t n) {
  using V = vec_t<T>;
  constexpr int64_t L = kLanes<T>;
  V acc[NR];
  const T* w = W + n * ldw;
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r) acc[r] = V{};
  int64_t k = 0;
  for (; k + L <= K; k += L) {
    const V xv = load(x + k);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) acc[r] = fmadd<T>(load(w + r * ldw + k), xv, acc[r]);
  }
  if (k < K) {
    const V xv = load_n(x + k, K - k);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) acc[r] = fmadd<T>(load_n(w + r * ldw + k, K - k), xv, acc[r]);
  }
  fold_lanes<T, L, NR>(acc);
  for (int r = 0; r < NR; ++r) {
    const T s = acc[r / L][r % L];
    out[n + r] = init ? init[n + r] + s : s;
  }
}

// out[n] = (init ? init[n] : 0) + W[n, :] . x for n in [n0, n1): one row, W (N, K) row-major as
// stored (rows ldw apart), so nothing is packed. Eight rows of W a pass, the rest one at a time;
// every output is the same sum either way (dot_rows), so results do not depend on how a team cuts
// [n0, n1). Measured, one thread, time a step of the LSTM at B = 1 (H = 128 from L2, 300 and 650
// from L3): 8 rows a pass 3.0, 18.8, 86 us; 4 rows of 2 vectors 3.0, 20.5, -; 16 rows 4.1, 22.9, -;
// the four rows of one vector before them 3.7, 30, -; packed panels (StepWeight) 2.9, 16.4, 80.
template <typename T>
inline void gemv_dot(T* out, const T* init, const T* x, const T* W, int64_t ldw, int64_t K, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 8 <= n1; n += 8) dot_rows<T, 8>(out, init, x, W, ldw, K, n);
  for (; n < n1; ++n) dot_rows<T, 1>(out, init, x, W, ldw, K, n);
}

// Swap the off-diagonal S x S blocks of the 2S x 2S block formed by rows a and b's lanes: one
// stage of the in-register transpose (S = L/2, ..., 1 in turn transposes L rows of L lanes).
template <typename V, int64_t L, int64_t S, size_t... I>
inline void swap_blocks(V& a, V& b, std::index_sequence<I...>) {
  const V na = __builtin_shufflevector(a, b, ((I & S) ? L + I - S : I)...);
  const V nb = __builtin_shufflevector(a, b, ((I & S) ? L + I : I + S)...);
  a = na, b = nb;
}

template <typename V, int64_t L, int64_t S>
inline void transpose_stage(V* v) {
  if constexpr (S >= 1) {
    for (int64_t r = 0; r < L; ++r)
      if (!(r & S)) swap_blocks<V, L, S>(v[r], v[r + S], std::make_index_sequence<L>{});
    transpose_stage<V, L, S / 2>(v);
  }
}

// A (K, N) -> (ceil(N / NP), K, NP): each panel of NP columns contiguous, zero-padded. A is
// row-major (each panel row a copy), or the transposed view of a row-major W (N, K), such as
// W_hh^T: then L x L tiles are transposed in registers. Without ATen's strided copy (27-84 us for
// W_hh^T at H = 128, this ~5 us: config A packs on every call). Weights larger than one core's L2
// stream from L3 or memory (W_hh at H = 650, 6.8 MB: 1.7 ms on one thread, 5% of an LSTM call at
// B = 20), so their panels are shared among the threads (ATen's parallel_for, one region per call;
// never called inside a team).
// pack_panels_into writes the panels at o ((ceil(N / NP), K, NP) elements).
template <typename T>
inline void pack_panels_into(const at::Tensor& A, int64_t NP, T* o) {
  const int64_t K = A.size(0), N = A.size(1), np = (N + NP - 1) / NP;
  const T* a = A.data_ptr<T>();
  const bool rowmajor = A.stride(1) == 1 || N == 1;
  const int64_t lda = A.stride(0), ldw = A.stride(1);                          // W (N, K): A(k, n) = a[n ldw + k]
  using V = vec_t<T>;
  constexpr int64_t L = kLanes<T>;
  auto panels = [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      if (rowmajor) {                                                          // row-major rows of A
        const int64_t w = std::min(NP, N - p * NP);
        for (int64_t k = 0; k < K; ++k) {
          T* dst = o + (p * K + k) * NP;
          std::copy(a + k * lda + p * NP, a + k * lda + p * NP + w, dst);
          std::fill(dst + w, dst + NP, T(0));
        }
        continue;
      }
      for (int64_t j0 = 0; j0 < NP; j0 += L) {                                 // L columns of the panel
        const int64_t n0 = p * NP + j0;
        int64_t k0 = 0;
        if (n0 + L <= N)
          for (; k0 + L <= K; k0 += L) {                                       // a full L x L tile
            V v[L];
            for (int64_t r = 0; r < L; ++r) v[r] = load(a + (n0 + r) * ldw + k0);
            transpose_stage<V, L, L / 2>(v);
            for (int64_t r = 0; r < L; ++r) store(o + (p * K + k0 + r) * NP + j0, v[r]);
          }
        for (int64_t k = k0; k < K; ++k)                                       // ragged edges, zero past N
          for (int64_t j = 0; j < L; ++j) o[(p * K + k) * NP + j0 + j] = n0 + j < N ? a[(n0 + j) * ldw + k] : T(0);
      }
    }
  };
  if (K * N * static_cast<int64_t>(sizeof(T)) > cache_bytes(2)) parallel_rows(0, np, 1, panels);
  else panels(0, np);
}

template <typename T>
inline at::Tensor pack_panels(const at::Tensor& A, int64_t NP) {
  at::Tensor out = at::empty({(A.size(1) + NP - 1) / NP, A.size(0), NP}, A.options());
  pack_panels_into<T>(A, NP, out.data_ptr<T>());
  return out;
}

// One step of this many rows or more (a cell called from Python with a batch) takes its recurrent
// product from ATen's GEMM on the weights as stored: the dot form below reads W once per row, and
// packing would copy W for a single use, while a GEMM reads it once for all rows. (LSTM: use_small.)
constexpr int64_t kOneStepGemmRows = 2;

// A step with fewer multiply-adds than limit(kTeamStepWork) (tuning.h) runs on one thread: a
// barrier per step costs more than the second thread saves.
// A call with fewer multiply-adds in all than this runs on one thread: waking a sleeping thread
// costs ~10 us (a streaming step, B=1, H=128, took 19 us with two threads and 8 us with one).
constexpr int64_t kParallelCall = 1 << 21;

// The threads that share a loop of steps of work multiply-adds each (team.h's run_team): all of
// ATen's, or one where a barrier per step or waking them would cost more than they save.
inline int team_threads(int64_t work, int64_t steps) {
  return work >= limit(kTeamStepWork) && work * steps >= kParallelCall ? at::get_num_threads() : 1;
}

// Steps from which one thread packs W for a single row (pack_one_row).
constexpr int64_t kPackRowSteps = 16;

// Whether the steps of one row through W (K, N) take it packed in panels rather than its rows by dot
// products (gemv_dot) as stored: where one thread runs kPackRowSteps steps or more. Measured,
// LSTM, B = 1, T = 50, time over nn.LSTM's in one process, dot / packed (with the copy): two
// threads (a team, each member its slices of the gates) H = 200 0.65-0.70 / 0.87-0.88, 300
// 0.47-0.48 / 0.68-1.13, 650 0.44-0.45 / 0.92-1.02, 1000 0.45-0.48 / 0.75-0.86, H = 50 and 100
// (one thread) level; one thread H = 50 0.73-0.76 / 0.60, 100 0.87-0.88 / 0.73, 200 0.91-0.92 /
// 0.86-0.88 (one panel's multiply-adds take K steps with no reduction; eight rows' dot products
// end in a fold of their lanes and a masked vector where K is ragged).
inline bool pack_one_row(int64_t K, int64_t N, int64_t steps) {
  return steps >= kPackRowSteps && team_threads(K * N, steps) == 1;
}

// The right operand A (K, N) of a step product out = init + x A (e.g. A = W_hh^T, a transposed view).
// Packed in panels once per call when that serves several rows (or pack_one_row says so for one
// row of a transposed A); otherwise used as stored: row-major A directly, or, for a transposed view
// of a row-major W = A^T with one row of x, dot products against W's rows (gemv_dot).
// blocks: A's columns are that many blocks of equal width (an LSTM's four gates, each H wide), and
// a team split by units takes a slice of each block. Packed, each block then starts a panel of its
// own: packed as one matrix, a block that starts inside a panel (H = 200: the forget gate at column
// 200, a panel at 192) is taken in narrower passes and ragged ends (a member's slice of it, 96
// columns, as 56 + 40: passes of 2, 1 and a masked half vector, where 64 + 32 would do).
template <typename T>
struct StepWeight {
  at::Tensor packed;
  const T* a;
  int64_t K, N, lda, ps;
  bool dot;
  int64_t groups = 1, gw, gs = 0;               // packed by blocks: groups of gw columns, gs elements apart
  StepWeight(const at::Tensor& A, int64_t B, int64_t steps, int64_t blocks = 1)
      : K(A.size(0)), N(A.size(1)), gw(N) {
    const bool rowmajor = A.is_contiguous(), transposed = A.t().is_contiguous();
    // one row reuses nothing, so row-major A is read as stored (packing would cost a copy a call)
    // (one step of several rows reuses each weight B times only: packing costs about as much as a
    // GEMM on A as stored)
    const bool pack = (!rowmajor && !transposed) || (B > 1 && steps > 1) ||
                      (!rowmajor && B == 1 && pack_one_row(K, N, steps));
    dot = !pack && !rowmajor;
    constexpr int64_t NP = kPanel<T>;
    if (pack && blocks > 1 && N % blocks == 0 && (N / blocks) % NP != 0) {     // else the same layout either way
      groups = blocks, gw = N / blocks;
      const at::Tensor src = rowmajor || transposed ? A : A.contiguous();
      const int64_t np = (gw + NP - 1) / NP;
      packed = at::empty({groups * np, K, NP}, A.options());
      gs = np * K * NP;
      for (int64_t q = 0; q < groups; ++q) pack_panels_into<T>(src.narrow(1, q * gw, gw), NP, packed.data_ptr<T>() + q * gs);
    } else if (pack) {
      packed = pack_panels<T>(rowmajor || transposed ? A : A.contiguous(), NP);
    }
    a = pack ? packed.data_ptr<T>() : A.data_ptr<T>();
    lda = pack ? NP : (dot ? K : N);
    ps = pack ? K * NP : NP;
  }
  // A's size as the user keeps it (what a step reads from memory if not from cache)
  int64_t bytes() const { return K * N * static_cast<int64_t>(sizeof(T)); }
  // out[b, n0:n1] = (init ? init[b, n0:n1] : 0) + x[b, :] A[:, n0:n1], columns n absolute.
  // reverse (the same results): panels last to first. A loop over time alternates the order, so a
  // step starts on the panels the last one ended on, still in L2: where a thread's share of W is
  // about the size of its L2 (config D of lstmkit bench: 2 MB), one fixed order evicts each panel
  // just before it is wanted again.
  void product(T* out, int64_t ldo, const T* init, int64_t ldi, const T* x, int64_t ldx, int64_t B,
               int64_t n0, int64_t n1, bool reverse = false) const {
    if (dot) {
      for (int64_t b = 0; b < B; ++b) gemv_dot(out + b * ldo, init ? init + b * ldi : init, x + b * ldx, a, K, K, n0, n1);
    } else if (groups == 1) {
      small_gemm(out, ldo, init, ldi, x, ldx, a, lda, ps, B, K, n0, n1, reverse);
    } else {
      for (int64_t i = 0; i < groups; ++i) {                                    // each block's columns in [n0, n1)
        const int64_t q = reverse ? groups - 1 - i : i, c = q * gw;
        const int64_t lo = std::max(n0, c), hi = std::min(n1, c + gw);
        if (lo < hi)
          small_gemm(out + c, ldo, init ? init + c : init, ldi, x, ldx, a + q * gs, lda, ps, B, K, lo - c, hi - c, reverse);
      }
    }
  }
};

}  // namespace lstmkit
