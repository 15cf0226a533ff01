// tuning.h: the limits that choose between two correct paths of a kernel, as this machine measured them.
//
// What it is: one table of limits per thread count (the crossovers move with it), read by the
// kernels where they choose a path: rows up to which a step takes the hand-written product rather
// than a GEMM per step (forward, backward), rows from which the input projection is taken inside
// each step, rows per thread from which a team splits by rows, multiply-adds from which a product
// goes to oneDNN. Each starts at the value measured on the machine this was written on (stated
// beside the constant it replaced); lstmkit/kernels/tuning.py measures them on the user's machine
// at first use, caches them beside the built kernel and sets them here (set_tuning).
// What it is not: a correctness switch. Both sides of every limit compute the same function and
// are tested against the same oracle; a limit only moves where one stops and the other starts.
#pragma once

#include <ATen/Parallel.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace lstmkit {

// The limits, by name. Defaults (2 threads, this AMD EPYC): see the comments where they are used.
// team_step_work: multiply-adds a step from which a loop over time takes a team (cpu_math.h's
// team_threads). It was the constant 16384 (a team from B = 1, H = 64); on this AMD EPYC (Zen 3, 2
// threads) the team of an LSTM step of one row then lost at H = 100 (1.2-1.3x one thread's time)
// and won from H = 128 (0.6-0.8): hence measured (tuning.py), the old constant the default.
enum Limit : int {
  kSmallForwardRows, kSmallBackwardRows, kFuseMinRows, kRowsPerMember, kOneDnnMinWork, kTeamStepWork, kLimits
};
inline constexpr std::array<const char*, kLimits> kLimitNames = {
    "small_forward_rows", "small_backward_rows", "fuse_min_rows", "rows_per_member", "onednn_min_work",
    "team_step_work"};
inline constexpr std::array<int64_t, kLimits> kLimitDefaults = {256, 128, 4, 2, int64_t(1) << 22, 16384};

// Thread counts with a table of their own; larger counts share the last one.
constexpr int kTunedThreadCounts = 64;

struct TuningTable {
  std::array<std::array<std::atomic<int64_t>, kLimits>, kTunedThreadCounts> v;
  TuningTable() {
    for (auto& row : v)
      for (int i = 0; i < kLimits; ++i) row[i].store(kLimitDefaults[i], std::memory_order_relaxed);
  }
};

inline TuningTable& tuning_table() {
  static TuningTable t;
  return t;
}

inline int tuning_row(int threads) { return std::min(std::max(threads, 1), kTunedThreadCounts) - 1; }

// The limit for the current thread count (ATen's), or for a given one.
inline int64_t limit(Limit which, int threads) {
  return tuning_table().v[tuning_row(threads)][which].load(std::memory_order_relaxed);
}
inline int64_t limit(Limit which) { return limit(which, at::get_num_threads()); }

}  // namespace lstmkit
