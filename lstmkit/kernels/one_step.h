// one_step.h: one time step with rows, for a cell called step by step from Python (LSTMCell, GRUCell,
// RNNCell): the products of a team member's own units, and the team for one step.
//
// What it is: run_one_step, a team split by units for a single step; gates_product, the part of one
// row's x W^T (+ init) that one member's units need, by dot products against W as stored;
// rows_team_step, the cells' step of rows on that team (rows_step_by_team says where: cell_cpu.cpp),
// each member the rows of W of its own units, as stored, by nt_gemm.h's product. Nothing of W is
// copied (packing W for one step costs about as much as the product below ~20 rows), each member
// reads nothing another member writes, so the step needs no barrier, the team reads each weight
// once, and results do not depend on the thread count (every sum is taken in the same order).
// What it is not: a loop over time (the layer kernels pack once per call and meet once per step).
// Dimensions: B batch, K the product's inner size (I or H), H hidden, gates 1 (RNN), 3 (GRU), 4 (LSTM).
#pragma once

#include <torch/extension.h>

#include <vector>

#include "cpu_math.h"
#include "gemm.h"
#include "team.h"

namespace lstmkit {

// One row: out[q H + j] = (init ? init[q H + j] : 0) + x . W[q H + j, :] for every gate q < gates,
// units j in [j0, j1). W (gates H, K) row-major, read as stored (dot products against its rows).
template <typename T>
void gates_product(T* out, const T* init, const T* x, const at::Tensor& W, int64_t gates, int64_t H, int64_t j0,
                   int64_t j1) {
  const StepWeight<T> w(W.t(), 1, 1);                                          // (K, gates H), read as stored
  for (int64_t q = 0; q < gates; ++q) w.product(out, 0, init, 0, x, 0, 1, q * H + j0, q * H + j1);
}

// b_ih + b_hh (G,) summed by a loop (an ATen add costs ~1.5 us, a cell step pays it every call);
// empty where the cell has no bias.
template <typename T>
std::vector<T> summed_bias(const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh, int64_t G) {
  std::vector<T> bias;
  if (!b_ih) return bias;
  const T *bi = b_ih->data_ptr<T>(), *bh = b_hh->data_ptr<T>();
  bias.resize(G);
  for (int64_t j = 0; j < G; ++j) bias[j] = bi[j] + bh[j];
  return bias;
}

// Whether a step of B rows (2 or more) of a cell (gates 4: LSTM, 3: GRU, 1: RNN; G = gates H) takes one
// team on the weights as stored (lstm_rows_team_impl, gru_rows_team_impl, rnn_rows_team_impl: each
// member the rows of W of its own units, nt_gemm.h's product) rather than two GEMM calls: with a team
// of two threads or more, where W_ih and W_hh together fit the team's L2 caches (one L2 a thread, as
// the CPU reports it: cpu_math.h), up to gemm.h's kNtMaxRows rows, and where gemm.h
// would not hand either product to oneDNN. Measured side by side (this AMD EPYC, 512 KB of L2 a
// core), LSTM cell, time of the step over torch's (torch._VF.lstm_cell), I = H, team / two GEMM
// calls: 2 threads, within the caches, B = 3 H = 64 0.42 / 0.45, B = 8 H = 128 0.39 / 0.57, B = 16
// H = 100 0.35 / 0.45; past them, B = 8 H = 200 0.42 / 0.43, B = 20 H = 200 0.62 / 0.65, B = 64
// H = 256 0.56 / 0.50, B = 5 H = 512 0.49 / 0.48, B = 20 H = 650 0.56 / 0.54; one thread (ATen's
// GEMM, gemm.h), B = 20 H = 200 0.90 / 0.77, B = 8 H = 128 0.59 / 0.56.
// Whether a cell's W_ih (G,I) and W_hh (G,H), G = gates H, of x's dtype fit together in the L2 caches
// of the threads a team would run on (one L2 a thread, as the CPU reports it: cpu_math.h).
inline bool weights_fit_team(const at::Tensor& x, int64_t H, int64_t gates) {
  const int64_t bytes = (x.size(1) + H) * gates * H * static_cast<int64_t>(x.element_size());
  return bytes <= static_cast<int64_t>(at::get_num_threads()) * cache_bytes(2);
}

inline bool rows_step_by_team(const at::Tensor& x, int64_t H, int64_t gates) {
  const int64_t B = x.size(0), I = x.size(1), G = gates * H;
  return at::get_num_threads() > 1 && B >= 2 && B <= kNtMaxRows && weights_fit_team(x, H, gates) &&
         !gemm_uses_onednn(x.scalar_type(), B, I, G) && !gemm_uses_onednn(x.scalar_type(), B, H, G);
}

// body(j0, j1) once per member, for its units [j0, j1) of every row (whole vectors: team_slice).
// A team of more than one thread only from kOneStepTeamWork multiply-adds (team.h): below, waking
// it costs more than it saves.
template <typename T, typename F>
void run_one_step(int64_t work, int64_t B, int64_t H, const F& body) {
  run_team(work, work >= kOneStepTeamWork ? kParallelCall : 1, B, [&](int rank, int size) {
    const auto [j0, j1] = team_slice<T>(H, rank, size);
    if (j0 < j1) body(j0, j1);
  }, 0, true);
}

// One step of B rows by a team split by units, on the weights as stored (where rows_step_by_team):
// x^T and h^T packed once here (nt_gemm.h's NtRows); each member, for every gate q, its own units'
// columns of
//   zx = (bx ? bx : 0) + x W_ih^T                 bx (G,): one row of init for every row
//   zh = (zh is zx ? zx : (bh ? bh : 0)) + h W_hh^T
// (the LSTM adds both products into one buffer, the GRU keeps h's apart with its bias), then
// cells(j0, j1) for its units [j0, j1). Each member reads only its own rows of the weights, which
// stay in its L2 from call to call, and the step wakes the team once; every sum is one chain over k
// in order, whatever the split.
template <typename T, typename F>
void rows_team_step(const T* x, const T* h, const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t gates, int64_t B,
                    int64_t I, int64_t H, T* zx, const T* bx, T* zh, const T* bh, const F& cells) {
  const int64_t G = gates * H;
  const NtRows<T> xs(x, I, B, I), hs(h, H, B, H);
  const T *wi = w_ih.data_ptr<T>(), *wh = w_hh.data_ptr<T>();
  const bool one_buffer = zh == zx;
  run_one_step<T>(B * G * (I + H), B, H, [&](int64_t j0, int64_t j1) {
    const auto buf = hs.scratch();                                              // (both: the same rows)
    for (int64_t q = 0; q < gates; ++q) {
      const int64_t n0 = q * H + j0, n1 = q * H + j1;
      nt_columns<T>(zx, G, bx, 0, xs, wi, I, n0, n1, buf.get());
      nt_columns<T>(zh, G, one_buffer ? zx : bh, one_buffer ? G : 0, hs, wh, H, n0, n1, buf.get());
    }
    cells(j0, j1);
  });
}

}  // namespace lstmkit
