// bidir_cpu.cpp: the two directions of a bidirectional LSTM layer at once, one thread each.
//
// What it is: lstm_layer_forward_pair, inference (no cache, no lengths) of both directions of one
// layer: the forward direction over x, the reverse one over x_rev (x flipped in time by the
// caller). At two threads, each direction runs on its own thread with the whole layer to itself:
// no barrier between the threads and no h_{t-1} crossing between the cores, where one direction
// on two threads splits its units and meets at a barrier every step (measured, T = 50, B = 8,
// H = 300: one direction scales 1.7x from one thread to two). Each call is lstm_layer_forward
// itself, whose results do not depend on the thread count (team.h), so the outputs are those of
// the two calls made one after the other.
// What it is not: used at other thread counts (one or more than two: the calls run one after the
// other, each with every thread), for training or with lengths.
// Dimensions: T time, B batch, I input, H hidden, P output of a direction.
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/extension.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <array>
#include <atomic>
#include <exception>
#include <vector>

#include "cpu_math.h"
#include "entries.h"

namespace lstmkit {

// -> {c_last (1,B,H), hs (T,B,P)} of the forward direction, then the same of the reverse one (its
// hs in its own time order: the caller flips it back).
std::vector<at::Tensor> lstm_layer_forward_pair(
    const at::Tensor& x, const at::Tensor& x_rev, const at::Tensor& h0, const at::Tensor& c0,
    const at::Tensor& h0_rev, const at::Tensor& c0_rev, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& w_hr, const at::Tensor& w_ih_rev,
    const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& bias_rev, const c10::optional<at::Tensor>& w_hr_rev,
    int64_t path, int64_t chunk_elems) {
  std::array<std::vector<at::Tensor>, 2> out;
  std::array<std::exception_ptr, 2> error;
  const at::ThreadLocalState caller;                 // grad mode, dispatch keys: the caller's, on every thread
  auto direction = [&](int d) {
    try {
      at::ThreadLocalStateGuard as_caller(caller);
      out[d] = d == 0 ? lstm_layer_forward(x, h0, c0, w_ih, w_hh, bias, w_hr, c10::nullopt, path, false,
                                           chunk_elems, c10::nullopt)
                      : lstm_layer_forward(x_rev, h0_rev, c0_rev, w_ih_rev, w_hh_rev, bias_rev, w_hr_rev,
                                           c10::nullopt, path, false, chunk_elems, c10::nullopt);
    } catch (...) {                                  // (an exception must not leave an OpenMP region)
      error[d] = std::current_exception();
    }
  };
  bool done = false;
#ifdef _OPENMP
  if (at::get_num_threads() == 2 && !at::in_parallel_region() && !omp_in_parallel() && !cores_busy()) {
    std::atomic<int> next{0};                        // claimed: a thread the region does not get runs none
#pragma omp parallel num_threads(2)
    for (int d; (d = next.fetch_add(1)) < 2;) direction(d);
    done = true;
  }
#endif
  if (!done) {
    direction(0);
    direction(1);
  }
  for (const auto& e : error)
    if (e) std::rethrow_exception(e);
  return {out[0][1], out[0][2], out[1][1], out[1][2]};
}

}  // namespace lstmkit
