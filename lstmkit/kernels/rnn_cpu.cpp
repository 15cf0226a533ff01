// rnn_cpu.cpp: the plain (Elman) RNN recurrence on the CPU, forward and backward, the loop over time in C++.
//
// What it is: the compiled twin of rnn_recurrence_forward / rnn_recurrence_backward in
// lstmkit/functional/rnn.py (same contract): h_t = act(zx_t + h_{t-1} W_hh^T), act tanh or relu.
// What it is not: the input projection or the weight gradients (the caller's large products).
// One team of threads for the whole loop (as the LSTM's): each member owns whole rows, or a slice
// of the hidden units of every row, takes its part of the recurrent product (hand-written,
// cpu_math.h) and applies the nonlinearity to it.
// Dimensions: T time, B batch, H hidden.
#include <torch/extension.h>

#include <array>

#include "checks.h"
#include "cpu_math.h"
#include "entries.h"
#include "gemm.h"
#include "one_step.h"
#include "team.h"
#include "vec_math.h"

namespace lstmkit {

// h[j] = tanh(h[j]) for j in [j0, j1): whole vectors (vec_math.h), the ragged end as one masked vector.
template <typename T>
inline void tanh_units(T* h, int64_t j0, int64_t j1) {
  constexpr int64_t L = kLanes<T>;
  int64_t j = j0;
  for (; j + L <= j1; j += L) store(h + j, vtanh<T>(load(h + j)));
  if (j < j1) store_n(h + j, vtanh<T>(load_n(h + j, j1 - j)), j1 - j);
}

// One team for the whole loop (run_team); members split rows or units as team_split decides
// (cpu_math.h): by rows they never wait, by units they meet once a step.
template <typename T>
void rnn_forward_impl(const T* zx, const T* h0, const StepWeight<T>& W, const int64_t* len, bool relu, T* hs,
                      int64_t T_, int64_t B, int64_t H) {
  run_team(B * H * H, T_, B, [&](int rank, int size) {
    const Split sp = team_split<T>(B, H, H, rank, size);
    const int64_t b0 = sp.b0, nb = sp.b1 - sp.b0, j0 = sp.j0, j1 = sp.j1;
    for (int64_t t = 0; t < T_; ++t) {
      const T* hp = t ? hs + (t - 1) * B * H : h0;                             // (B,H) h_{t-1}
      T* h = hs + t * B * H;                                                    // (B,H) h_t
      W.product(h + b0 * H, H, zx + (t * B + b0) * H, H, hp + b0 * H, H, nb, j0, j1, t & 1);  // zx_t + h W_hh^T
      for (int64_t b = sp.b0; b < sp.b1; ++b) {
        T* __restrict hb = h + b * H;
        if (len && t >= len[b]) std::copy(hp + b * H + j0, hp + b * H + j1, hb + j0);     // held
        else if (relu) for (int64_t j = j0; j < j1; ++j) hb[j] = hb[j] > T(0) ? hb[j] : T(0);
        else tanh_units(hb, j0, j1);
      }
      if (!sp.by_rows) team_barrier();
    }
  }, W.bytes());                                                  // (team.h: split_by_rows)
}

// dh_t = dhs_t + dz_{t+1} W_hh (+ dh_{t+1} where step t+1 was held); dz_t = dh_t act'(h_t), from the
// saved output: tanh' = 1 - h^2, relu' = [h > 0]; 0 at held steps.
template <typename T>
void rnn_backward_impl(const T* dhs, const T* hs, const StepWeight<T>& W, const int64_t* len, bool relu, T* dz, T* dh0,
                       T* dh_buf, int64_t T_, int64_t B, int64_t H) {
  run_team(B * H * H, T_, B, [&](int rank, int size) {
    const Split sp = team_split<T>(B, H, H, rank, size);
    const int64_t b0 = sp.b0, nb = sp.b1 - sp.b0, j0 = sp.j0, j1 = sp.j1;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      T* dh = dh_buf + (t & 1) * B * H;
      const T* dh_next = dh_buf + ((t + 1) & 1) * B * H;
      if (t + 1 < T_)
        W.product(dh + b0 * H, H, dhs + (t * B + b0) * H, H, dz + ((t + 1) * B + b0) * H, H, nb, j0, j1, t & 1);
      for (int64_t b = sp.b0; b < sp.b1; ++b) {
        T* __restrict dhb = dh + b * H;
        T* __restrict dzb = dz + t * B * H + b * H;
        const T* __restrict hb = hs + t * B * H + b * H;
        if (t + 1 == T_) std::copy(dhs + t * B * H + b * H + j0, dhs + t * B * H + b * H + j1, dhb + j0);
        else if (len && t + 1 >= len[b]) for (int64_t j = j0; j < j1; ++j) dhb[j] += dh_next[b * H + j];
        if (len && t >= len[b]) std::fill(dzb + j0, dzb + j1, T(0));
        else if (relu) for (int64_t j = j0; j < j1; ++j) dzb[j] = hb[j] > T(0) ? dhb[j] : T(0);
        else for (int64_t j = j0; j < j1; ++j) dzb[j] = dhb[j] * (T(1) - hb[j] * hb[j]);
      }
      if (!sp.by_rows) team_barrier();
    }
    W.product(dh0 + b0 * H, H, static_cast<const T*>(nullptr), 0, dz + b0 * H, H, nb, j0, j1);  // dh0 = dz_0 W_hh
  }, W.bytes());                                                  // (team.h: split_by_rows)
}

// One step of one row with its input projection, for a cell called from Python: h' = act(bias +
// x W_ih^T + h W_hh^T) (H,), each member its own units (one_step.h). Measured, time of this step over
// torch's (torch._VF.rnn_tanh_cell: two GEMMs, an add, tanh), I = H: 2 threads H = 128-1000
// 0.41-0.68; one thread 0.61-0.74.
template <typename T>
void rnn_row_step_impl(const T* x, const T* h, const at::Tensor& w_ih, const at::Tensor& w_hh, const T* bias,
                       bool relu, T* out, int64_t I, int64_t H) {
  run_one_step<T>(H * (I + H), 1, H, [&](int64_t j0, int64_t j1) {
    gates_product(out, bias, x, w_ih, 1, H, j0, j1);                            // bias + x W_ih^T
    gates_product(out, out, h, w_hh, 1, H, j0, j1);                             //  + h W_hh^T
    if (relu) for (int64_t j = j0; j < j1; ++j) out[j] = out[j] > T(0) ? out[j] : T(0);
    else tanh_units(out, j0, j1);
  });
}

// Rows where rows_step_by_team (one gate): one team on the weights as stored (one_step.h's
// rows_team_step), both products into out, which starts as the bias row; then each member's units
// through the activation. Nothing of W is copied: only x^T and h^T are packed (a few KB).
template <typename T>
void rnn_rows_team_impl(const T* x, const T* h, const at::Tensor& w_ih, const at::Tensor& w_hh, const T* bias,
                        bool relu, T* out, int64_t B, int64_t I, int64_t H) {
  rows_team_step<T>(x, h, w_ih, w_hh, 1, B, I, H, out, bias, out, nullptr, [&](int64_t j0, int64_t j1) {
    for (int64_t b = 0; b < B; ++b) {
      T* __restrict hb = out + b * H;
      if (relu) for (int64_t j = j0; j < j1; ++j) hb[j] = hb[j] > T(0) ? hb[j] : T(0);
      else tanh_units(hb, j0, j1);
    }
  });
}

// ---- entry points: each checks every argument first (checks.h); T = 0 is refused, B = 0 gives
// empty outputs without running the loop.

// zx or dhs (T,B,H), the first tensor: its sizes, checked.
static std::array<int64_t, 3> sequence_sizes(const Checks& c, const at::Tensor& t) {
  c.rank(c.first, t, 3, "(T, B, H)");
  const int64_t T_ = t.size(0), B = t.size(1), H = t.size(2);
  c.steps(c.first, T_);
  c.hidden(c.first, "last dimension", H, 1, "H");
  c.tensor(c.first, t, "(T, B, H)", {T_, B, H});
  return {T_, B, H};
}

static bool is_relu(const Checks& c, const std::string& nonlinearity) {
  TORCH_CHECK(nonlinearity == "tanh" || nonlinearity == "relu", c.fn,
              ": nonlinearity should be 'tanh' or 'relu', got '", nonlinearity, "'");
  return nonlinearity == "relu";
}

at::Tensor rnn_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& w_hh,
                       const std::string& nonlinearity, const c10::optional<at::Tensor>& lengths) {
  const Checks c("rnn_forward", "zx", zx);
  const std::array<int64_t, 3> size = sequence_sizes(c, zx);    // not a structured binding: C++17 lambdas
                                                                  // cannot capture those
  const int64_t T_ = size[0], B = size[1], H = size[2];
  c.tensor("h0", h0, "(B, H)", {B, H});
  c.tensor("w_hh", w_hh, "(H, H)", {H, H});
  const bool relu = is_relu(c, nonlinearity);
  const int64_t* len = c.lengths(lengths, T_, B);
  if (T_ == 1 && B >= kOneStepGemmRows) {                     // one step: the product by ATen's GEMM (cpu_math.h)
    at::Tensor hs = gemm_new(h0, w_hh.t(), zx[0]);                             // (B,H), then act in place
    return (relu ? hs.relu_() : hs.tanh_()).unsqueeze(0);
  }
  at::Tensor hs = at::empty_like(zx);
  if (B > 0) AT_DISPATCH_FLOATING_TYPES(zx.scalar_type(), "rnn_forward", [&] {
    rnn_forward_impl<scalar_t>(zx.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), StepWeight<scalar_t>(w_hh.t(), B, T_),
                               len, relu, hs.data_ptr<scalar_t>(), T_, B, H);
  });
  return hs;
}

std::vector<at::Tensor> rnn_backward(const at::Tensor& dhs, const at::Tensor& hs, const at::Tensor& w_hh,
                                     const std::string& nonlinearity, const c10::optional<at::Tensor>& lengths) {
  const Checks c("rnn_backward", "dhs", dhs);
  const std::array<int64_t, 3> size = sequence_sizes(c, dhs);
  const int64_t T_ = size[0], B = size[1], H = size[2];
  c.tensor("hs", hs, "(T, B, H)", {T_, B, H});
  c.tensor("w_hh", w_hh, "(H, H)", {H, H});
  const bool relu = is_relu(c, nonlinearity);
  const int64_t* len = c.lengths(lengths, T_, B);
  at::Tensor dz = at::empty_like(hs), dh0 = at::empty({B, H}, hs.options());
  if (T_ == 1 && B >= kOneStepGemmRows) {                     // one step: dz by the formula, dh0 = dz W_hh by GEMM
    AT_DISPATCH_FLOATING_TYPES(dhs.scalar_type(), "rnn_backward", [&] {
      const scalar_t *dh = dhs.data_ptr<scalar_t>(), *h = hs.data_ptr<scalar_t>();
      scalar_t* d = dz.data_ptr<scalar_t>();
      for (int64_t i = 0; i < B * H; ++i)
        d[i] = relu ? (h[i] > scalar_t(0) ? dh[i] : scalar_t(0)) : dh[i] * (scalar_t(1) - h[i] * h[i]);
    });
    return {dz, gemm_new(dz[0], w_hh)};
  }
  at::Tensor dh_buf = at::empty({2, B, H}, hs.options());
  if (B > 0) AT_DISPATCH_FLOATING_TYPES(dhs.scalar_type(), "rnn_backward", [&] {
    rnn_backward_impl<scalar_t>(dhs.data_ptr<scalar_t>(), hs.data_ptr<scalar_t>(), StepWeight<scalar_t>(w_hh, B, T_),
                                len, relu, dz.data_ptr<scalar_t>(), dh0.data_ptr<scalar_t>(),
                                dh_buf.data_ptr<scalar_t>(), T_, B, H);
  });
  return {dz, dh0};
}

// h' = act(bias + x W_ih^T + h W_hh^T): x (B,I) and w_ih (H,I) checked by the caller (cell_cpu.cpp),
// the rest here. path (RnnRows, entries.h): one row, rnn_row_step_impl; rows by a team on the
// weights as stored, rnn_rows_team_impl; else the two products by gemm.h on the weights as stored (a
// few rows: nt_gemm.h at two threads, ATen's GEMM at one), both into one buffer that starts as the
// bias, then the activation by loops: one allocation and no ATen operator between them (the
// projection, the one-step recurrence and an add took three allocations and ~15 us more at B = 8,
// H = 128).
// b_ih and b_hh: checked by the caller; their sum is taken here (summed_bias, one_step.h).
at::Tensor rnn_one_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                        const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                        const std::string& nonlinearity, RnnRows path) {
  const Checks c("rnn_cell_forward", "x", x);
  const int64_t B = x.size(0), I = x.size(1), H = w_ih.size(0);
  c.tensor("h", h, "(B, H)", {B, H});
  c.tensor("w_hh", w_hh, "(H, H)", {H, H});
  const bool relu = is_relu(c, nonlinearity);
  at::Tensor out = at::empty({B, H}, x.options());
  if (B == 0 || H == 0) return out;
  if (path != RnnRows::kGemmCalls) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_one_step", [&] {
      const std::vector<scalar_t> bias = summed_bias<scalar_t>(b_ih, b_hh, H);
      const scalar_t *px = x.data_ptr<scalar_t>(), *ph = h.data_ptr<scalar_t>(), *pb = b_ih ? bias.data() : nullptr;
      scalar_t* po = out.data_ptr<scalar_t>();
      if (path == RnnRows::kTeam) rnn_rows_team_impl<scalar_t>(px, ph, w_ih, w_hh, pb, relu, po, B, I, H);
      else rnn_row_step_impl<scalar_t>(px, ph, w_ih, w_hh, pb, relu, po, I, H);
    });
    return out;
  }
  if (b_ih) AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_one_step", [&] {
    const std::vector<scalar_t> bias = summed_bias<scalar_t>(b_ih, b_hh, H);
    scalar_t* o = out.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) std::copy(bias.begin(), bias.end(), o + b * H);
  });
  gemm_out(out, x, w_ih.t(), b_ih.has_value());                                 // (B,H) bias + x W_ih^T
  gemm_out(out, h, w_hh.t(), true);                                             //  + h W_hh^T
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_one_step", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    if (relu) for (int64_t i = 0; i < B * H; ++i) o[i] = o[i] > scalar_t(0) ? o[i] : scalar_t(0);
    else tanh_units(o, 0, B * H);
  });
  return out;
}

}  // namespace lstmkit
