// gru_cpu.cpp: the GRU recurrence on the CPU, forward and backward, the loop over time in C++.
//
// What it is: the compiled twin of gru_recurrence_forward / gru_recurrence_backward in
// lstmkit/functional/gru.py (same contract; the equations are in that file's docstring, gates r, z, n).
// What it is not: the input projection or the weight gradients (the caller's large products).
// One team of threads for the whole loop (as the LSTM's): each member owns whole rows (a batch of
// 8 or more on two cores) or a slice of the hidden units of every row, takes its part of
// gh = h_{t-1} W_hh^T + b_hh for the three gates (hand-written product, cpu_math.h), then the gate
// math, which needs nothing from the other members.
// Dimensions: T time, B batch, H hidden, G = 3H.
#include <torch/extension.h>

#include "checks.h"
#include "cpu_math.h"
#include "entries.h"
#include "gemm.h"
#include "one_step.h"
#include "team.h"
#include "vec_math.h"

namespace lstmkit {

// One row, units [0, n): r = σ(xr + hr), z = σ(xz + hz), n = tanh(xn + r ghn), h = (1 - z) n + z h_prev.
// Whole vectors with vec_math.h, the ragged end as one vector of fewer lanes (load_n / store_n).
template <typename T>
inline void gru_cell_forward(const T* __restrict x, const T* __restrict gh, const T* __restrict hp,
                             T* __restrict gr, T* __restrict gz, T* __restrict gn, T* __restrict ghn,
                             T* __restrict h, int64_t H, int64_t n) {
  using V = vec_t<T>;
  constexpr int64_t L = kLanes<T>;
  auto units = [&](int64_t j, auto ld, auto st) {                              // the units j.. of one vector
    const V r = vsigmoid<T>(ld(x + j) + ld(gh + j)), z = vsigmoid<T>(ld(x + H + j) + ld(gh + H + j));
    const V hn = ld(gh + 2 * H + j);
    const V nn = vtanh<T>(ld(x + 2 * H + j) + r * hn);
    st(gr + j, r), st(gz + j, z), st(gn + j, nn), st(ghn + j, hn);
    st(h + j, (T(1) - z) * nn + z * ld(hp + j));
  };
  int64_t j = 0;
  for (; j + L <= n; j += L) units(j, [](const T* p) { return load(p); }, [](T* p, V v) { store(p, v); });
  const int64_t m = n - j;
  if (m > 0) units(j, [m](const T* p) { return load_n(p, m); }, [m](T* p, V v) { store_n(p, v, m); });
}

// The mirror, from dh (everything reaching h_t): the input-side and recurrent-side pre-activation
// gradients. σ' = y(1 - y), tanh' = 1 - y^2, from the saved gates.
template <typename T>
inline void gru_cell_backward(const T* __restrict g, const T* __restrict ghn, const T* __restrict hp,
                              const T* __restrict dh, T* __restrict dzx, T* __restrict dgh, int64_t H, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const T r = g[j], z = g[H + j], nn = g[2 * H + j];
    const T dn = dh[j] * (T(1) - z) * (T(1) - nn * nn);
    const T dzp = dh[j] * (hp[j] - nn) * z * (T(1) - z);
    const T drp = dn * ghn[j] * r * (T(1) - r);
    dzx[j] = drp, dzx[H + j] = dzp, dzx[2 * H + j] = dn;
    dgh[j] = drp, dgh[H + j] = dzp, dgh[2 * H + j] = dn * r;
  }
}

// One team for the whole loop (run_team); members split rows or units as team_split decides
// (cpu_math.h): by rows they never wait, by units they meet once a step.
template <typename T>
void gru_forward_impl(const T* zx, const T* h0, const StepWeight<T>& W, const T* b_hh, const int64_t* len, T* gates,
                      T* ghn, T* hs, T* gh, int64_t T_, int64_t B, int64_t H, bool cache, bool gh_given) {
  const int64_t G = 3 * H;
  auto slot = [&](int64_t t) { return cache ? t : 0; };                        // without the cache: one scratch row
  run_team(B * G * H, T_, B, [&](int rank, int size) {
    const Split sp = team_split<T>(B, H, H, rank, size);
    const int64_t b0 = sp.b0, nb = sp.b1 - sp.b0, j0 = sp.j0, j1 = sp.j1;
    for (int64_t t = 0; t < T_; ++t) {
      const T* hp = t ? hs + (t - 1) * B * H : h0;                             // (B,H) h_{t-1}
      if (gh_given) {                                                           // one step: gh came from a GEMM
      } else if (j0 == 0 && j1 == H) {                                          // gh = h_{t-1} W_hh^T + b_hh
        W.product(gh + b0 * G, G, b_hh, 0, hp + b0 * H, H, nb, 0, G, t & 1);   // every unit: one range
      } else {
        for (int64_t q = 0; q < 3; ++q)
          W.product(gh + b0 * G, G, b_hh, 0, hp + b0 * H, H, nb, q * H + j0, q * H + j1, t & 1);
      }
      for (int64_t b = sp.b0; b < sp.b1; ++b) {
        T* g = gates + (slot(t) * B + b) * G;
        T *ghnb = ghn + (slot(t) * B + b) * H, *h = hs + (t * B + b) * H;
        const T* ghb = gh + b * G;
        if (len && t >= len[b]) {                                              // held: gates 0, h kept
          for (int64_t q = 0; q < 3; ++q) std::fill(g + q * H + j0, g + q * H + j1, T(0));
          std::copy(ghb + 2 * H + j0, ghb + 2 * H + j1, ghnb + j0);
          std::copy(hp + b * H + j0, hp + b * H + j1, h + j0);
        } else {
          gru_cell_forward(zx + (t * B + b) * G + j0, ghb + j0, hp + b * H + j0, g + j0, g + H + j0,
                           g + 2 * H + j0, ghnb + j0, h + j0, H, j1 - j0);
        }
      }
      if (!sp.by_rows) team_barrier();
    }
  }, W.bytes());                                                  // (team.h: split_by_rows)
}

// dh_t = dhs_t + dgh_{t+1} W_hh + dh_{t+1} z_{t+1} (dh_{t+1} whole where step t+1 was held).
template <typename T>
void gru_backward_impl(const T* dhs, const T* gates, const T* ghn, const T* hs, const T* h0, const StepWeight<T>& W,
                       const int64_t* len, T* dzx, T* dgh, T* dh0, T* dh_buf, int64_t T_, int64_t B, int64_t H,
                       bool dh0_product_later) {
  const int64_t G = 3 * H;
  run_team(B * G * H, T_, B, [&](int rank, int size) {
    const Split sp = team_split<T>(B, H, H, rank, size);
    const int64_t b0 = sp.b0, nb = sp.b1 - sp.b0, j0 = sp.j0, j1 = sp.j1;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      T* dh = dh_buf + (t & 1) * B * H;
      const T* dh_next = dh_buf + ((t + 1) & 1) * B * H;
      const T* hp = t ? hs + (t - 1) * B * H : h0;
      if (t + 1 < T_)
        W.product(dh + b0 * H, H, dhs + (t * B + b0) * H, H, dgh + ((t + 1) * B + b0) * G, G, nb, j0, j1, t & 1);
      for (int64_t b = sp.b0; b < sp.b1; ++b) {
        T* dhb = dh + b * H;
        if (t + 1 == T_) {
          std::copy(dhs + (t * B + b) * H + j0, dhs + (t * B + b) * H + j1, dhb + j0);
        } else {
          const bool held_next = len && t + 1 >= len[b];
          const T* z_next = gates + ((t + 1) * B + b) * G + H;
          for (int64_t j = j0; j < j1; ++j) dhb[j] += dh_next[b * H + j] * (held_next ? T(1) : z_next[j]);
        }
        T *dzxb = dzx + (t * B + b) * G, *dghb = dgh + (t * B + b) * G;
        if (len && t >= len[b]) {
          for (int64_t q = 0; q < 3; ++q) {
            std::fill(dzxb + q * H + j0, dzxb + q * H + j1, T(0));
            std::fill(dghb + q * H + j0, dghb + q * H + j1, T(0));
          }
        } else {
          gru_cell_backward(gates + (t * B + b) * G + j0, ghn + (t * B + b) * H + j0, hp + b * H + j0, dhb + j0,
                            dzxb + j0, dghb + j0, H, j1 - j0);
        }
      }
      if (!sp.by_rows) team_barrier();
    }
    // dh0 = dgh_0 W_hh + dh_0 z_0 (step 0 always runs: lengths >= 1); the product is the caller's
    // (a GEMM) when dh0_product_later
    if (dh0_product_later)
      for (int64_t b = sp.b0; b < sp.b1; ++b) std::fill(dh0 + b * H + j0, dh0 + b * H + j1, T(0));
    else
      W.product(dh0 + b0 * H, H, static_cast<const T*>(nullptr), 0, dgh + b0 * G, G, nb, j0, j1);
    for (int64_t b = sp.b0; b < sp.b1; ++b)
      for (int64_t j = j0; j < j1; ++j) dh0[b * H + j] += dh_buf[b * H + j] * gates[b * G + H + j];
  }, W.bytes());                                                  // (team.h: split_by_rows)
}

// ---- entry points: each checks every argument first (checks.h); T = 0 is refused, B = 0 gives
// empty outputs without running the loop.

// One step of one row with its input projection, for a cell called from Python (gru_cell_forward,
// cell_cpu.cpp): each member's own units of gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh
// (one_step.h), then the gate math. gi is taken in the gates row, which the gate math overwrites with
// the activated gates [r z n] (each vector's loads before its stores); ghn (H,) = h W_hn^T + b_hn.
template <typename T>
void gru_row_step_impl(const T* x, const T* h, const at::Tensor& w_ih, const at::Tensor& w_hh, const T* b_ih,
                       const T* b_hh, T* gates, T* gh, T* ghn, T* out, int64_t I, int64_t H) {
  run_one_step<T>(3 * H * (I + H), 1, H, [&](int64_t j0, int64_t j1) {
    gates_product(gates, b_ih, x, w_ih, 3, H, j0, j1);
    gates_product(gh, b_hh, h, w_hh, 3, H, j0, j1);
    gru_cell_forward(gates + j0, gh + j0, h + j0, gates + j0, gates + H + j0, gates + 2 * H + j0, ghn + j0, out + j0,
                     H, j1 - j0);
  });
}

// Rows where rows_step_by_team: one team on the weights as stored (one_step.h's rows_team_step),
// gi = x W_ih^T + b_ih (in the gates tensor) and gh = h W_hh^T + b_hh, then each member's units'
// gate math (the layer's one-step call took ~30 us more at B = 8, I = H = 128: its projection,
// buffers for a sequence and a GEMM call for h W_hh^T).
template <typename T>
void gru_rows_team_impl(const T* x, const T* h, const at::Tensor& w_ih, const at::Tensor& w_hh, const T* b_ih,
                        const T* b_hh, T* gates, T* gh, T* ghn, T* out, int64_t B, int64_t I, int64_t H) {
  const int64_t G = 3 * H;
  rows_team_step<T>(x, h, w_ih, w_hh, 3, B, I, H, gates, b_ih, gh, b_hh, [&](int64_t j0, int64_t j1) {
    for (int64_t b = 0; b < B; ++b) {
      T* g = gates + b * G;
      gru_cell_forward(g + j0, gh + b * G + j0, h + b * H + j0, g + j0, g + H + j0, g + 2 * H + j0, ghn + b * H + j0,
                       out + b * H + j0, H, j1 - j0);
    }
  });
}

// cache false (inference): gates and gh_n go to one scratch row each and come back undefined.
std::vector<at::Tensor> gru_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& w_hh,
                                    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& lengths,
                                    bool cache) {
  const Checks c("gru_forward", "zx", zx);
  c.rank("zx", zx, 3, "(T, B, 3H)");
  const int64_t T_ = zx.size(0), B = zx.size(1), H = zx.size(2) / 3;
  c.steps("zx", T_);
  c.hidden("zx", "last dimension", zx.size(2), 3, "3H");
  c.tensor("zx", zx, "(T, B, 3H)", {T_, B, 3 * H});
  c.tensor("h0", h0, "(B, H)", {B, H});
  c.tensor("w_hh", w_hh, "(3H, H)", {3 * H, H});
  c.optional("b_hh", b_hh, "(3H,)", {3 * H});
  const int64_t* len = c.lengths(lengths, T_, B);
  at::Tensor gates = at::empty({cache ? T_ : 1, B, 3 * H}, zx.options());
  at::Tensor ghn = at::empty({cache ? T_ : 1, B, H}, zx.options());
  const bool one_step = T_ == 1 && B >= kOneStepGemmRows;                       // gh by ATen's GEMM (cpu_math.h)
  at::Tensor hs = at::empty({T_, B, H}, zx.options());
  at::Tensor gh = !one_step ? at::empty({B, 3 * H}, zx.options())
                            : gemm_new(h0, w_hh.t(), b_hh);
  if (B > 0) AT_DISPATCH_FLOATING_TYPES(zx.scalar_type(), "gru_forward", [&] {
    gru_forward_impl<scalar_t>(zx.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), StepWeight<scalar_t>(w_hh.t(), B, T_),
                               b_hh ? b_hh->data_ptr<scalar_t>() : nullptr, len, gates.data_ptr<scalar_t>(),
                               ghn.data_ptr<scalar_t>(), hs.data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(), T_, B, H,
                               cache, one_step);
  });
  if (!cache) return {at::Tensor(), at::Tensor(), hs};
  return {gates, ghn, hs};
}

std::vector<at::Tensor> gru_backward(const at::Tensor& dhs, const at::Tensor& gates, const at::Tensor& ghn,
                                     const at::Tensor& hs, const at::Tensor& h0, const at::Tensor& w_hh,
                                     const c10::optional<at::Tensor>& lengths) {
  const Checks c("gru_backward", "dhs", dhs);
  c.rank("dhs", dhs, 3, "(T, B, H)");
  const int64_t T_ = dhs.size(0), B = dhs.size(1), H = dhs.size(2);
  c.steps("dhs", T_);
  c.hidden("dhs", "last dimension", H, 1, "H");
  c.tensor("dhs", dhs, "(T, B, H)", {T_, B, H});
  c.tensor("gates", gates, "(T, B, 3H)", {T_, B, 3 * H});
  c.tensor("ghn", ghn, "(T, B, H)", {T_, B, H});
  c.tensor("hs", hs, "(T, B, H)", {T_, B, H});
  c.tensor("h0", h0, "(B, H)", {B, H});
  c.tensor("w_hh", w_hh, "(3H, H)", {3 * H, H});
  const int64_t* len = c.lengths(lengths, T_, B);
  at::Tensor dzx = at::empty_like(gates), dgh = at::empty_like(gates), dh0 = at::empty({B, H}, dhs.options());
  at::Tensor dh_buf = at::empty({2, B, H}, dhs.options());
  const bool one_step = T_ == 1 && B >= kOneStepGemmRows;                       // dh0's product by GEMM (cpu_math.h)
  if (B > 0) AT_DISPATCH_FLOATING_TYPES(dhs.scalar_type(), "gru_backward", [&] {
    gru_backward_impl<scalar_t>(dhs.data_ptr<scalar_t>(), gates.data_ptr<scalar_t>(), ghn.data_ptr<scalar_t>(),
                                hs.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), StepWeight<scalar_t>(w_hh, B, T_),
                                len, dzx.data_ptr<scalar_t>(), dgh.data_ptr<scalar_t>(), dh0.data_ptr<scalar_t>(),
                                dh_buf.data_ptr<scalar_t>(), T_, B, H, one_step);
  });
  if (one_step) gemm_out(dh0, dgh[0], w_hh, true);                              // + dgh_0 W_hh
  return {dzx, dgh, dh0};
}

// -> {h'} or, with cache, {h', gates (B,3H), ghn (B,H)}: x (B,I), w_ih (3H,I) and both biases checked
// by the caller (cell_cpu.cpp), the rest here. One row: the team's dot products; rows (where
// cell_cpu.cpp sends them: rows_step_by_team): the team on the weights as stored.
std::vector<at::Tensor> gru_one_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                                     const c10::optional<at::Tensor>& b_hh, bool cache) {
  const Checks c("gru_cell_forward", "x", x);
  const int64_t B = x.size(0), I = x.size(1), H = w_ih.size(0) / 3;
  c.tensor("h", h, "(B, H)", {B, H});
  c.tensor("w_hh", w_hh, "(3H, H)", {3 * H, H});
  at::Tensor gates = at::empty({B, 3 * H}, x.options()), gh = at::empty({B, 3 * H}, x.options());
  at::Tensor ghn = at::empty({B, H}, x.options()), out = at::empty({B, H}, x.options());
  if (B > 0 && H > 0) AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_one_step", [&] {
    const scalar_t *bi = b_ih ? b_ih->data_ptr<scalar_t>() : nullptr, *bh = b_hh ? b_hh->data_ptr<scalar_t>() : nullptr;
    if (B == 1)
      gru_row_step_impl<scalar_t>(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), w_ih, w_hh, bi, bh,
                                  gates.data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(), ghn.data_ptr<scalar_t>(),
                                  out.data_ptr<scalar_t>(), I, H);
    else
      gru_rows_team_impl<scalar_t>(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), w_ih, w_hh, bi, bh,
                                   gates.data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(), ghn.data_ptr<scalar_t>(),
                                   out.data_ptr<scalar_t>(), B, I, H);
  });
  if (!cache) return {out};
  return {out, gates, ghn};
}

}  // namespace lstmkit
