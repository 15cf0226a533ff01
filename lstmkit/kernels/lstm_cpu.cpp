// lstm_cpu.cpp: the LSTM layer on the CPU, forward and backward, the whole loop over time in C++.
//
// What it is: the compiled twin of lstm_layer_forward, lstm_recurrence_forward and
// lstm_recurrence_backward in lstmkit/functional/lstm.py, same contract and same tensors (see that
// file's docstrings; the equations are written once, in lstmkit/reference/lstm.py). The forward
// takes the input projection too (one BLAS product into the gates tensor, or chunks of it, or
// inside each step: see fuse_max_bytes); the weight gradients stay with the caller (large products
// taken once per sequence). In backward dz may be written over the gates (overwrite).
// What it is not: a module. No directions, layers or packing; no autograd.
//
// Per step, two ways to take the recurrent product h_{t-1} W_hh^T:
// - up to limit(kSmallForwardRows) rows (kSmallBackwardRows in backward; tuning.h), hand-written (StepWeight and
//   small_gemm in cpu_math.h), fused with the gate math (vec_math.h): one team of threads for the
//   whole call, each member owning a slice of the hidden units (all four gates of its units, so the
//   cell needs nothing from the others), a barrier per step (two with a projection). Results do not
//   depend on the thread count (same sums, same order), one row aside: one thread takes it from
//   packed panels, a team by dot products against W_hh's rows (cpu_math.h's pack_one_row).
// - more rows: gemm.h's product (oneDNN, MKL, or by hand with W_hh as stored for a call of fewer than
//   kCopyMinSteps steps and few rows) into the preallocated gate buffer, then the gate math by rows.
// Backward mirrors it: only dh_{t-1} = dz_t W_hh (+ dhs) is sequential.
// Dimensions: T time, B batch, I input, H hidden, P projection (P == H without one), G = 4H.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "checks.h"
#include "cpu_math.h"
#include "entries.h"
#include "gemm.h"
#include "one_step.h"
#include "team.h"
#include "tuning.h"
#include "vec_math.h"

namespace lstmkit {

enum Path : int64_t { kAuto = 0, kSmall = 1, kBlas = 2 };

// Rows up to which the hand-written product is taken rather than a BLAS call per step (oneDNN's
// matmul, gemm.h): limit(kSmallForwardRows) and limit(kSmallBackwardRows), measured on the user's
// machine (lstmkit/kernels/tuning.py). Their defaults, 256 and 128, were measured side by side here
// (2 threads, this AMD EPYC, 16 steps, time hand-written / BLAS): forward 0.64-0.90 at 32 rows,
// 0.76-0.97 at 128, 0.89-1.01 at 256 (H = 128 ... 650: the smaller H, the larger the lead);
// backward 0.71-0.94 at 32, 0.79-1.03 at 128, 0.92-1.00 at 256.
// One step of several rows (a cell called from Python) goes to BLAS: packing the weights for the
// hand-written product costs more than the one product it serves (LSTMCell, B=64, H=650: 9.7 ms
// packed, 2.8 ms by MKL on the weights as stored, 3.0 ms nn.LSTMCell). One row keeps the
// hand-written dot products against the weights as stored (13 us, B=1 H=128; MKL 63 us).
inline bool use_small(int64_t path, int64_t B, int64_t limit, int64_t T_) {
  return path == kSmall || (path == kAuto && B <= limit && (T_ > 1 || B == 1));
}

// Without the cache, each step takes its input part x_t W_ih^T in the team (no zx buffer, and the
// input part of step t+1 fills the wait at step t's barrier) when there are rows enough to reuse
// the weights (limit(kFuseMinRows), default 4; tuning.h; and a full register block of them a
// member: rows_per_pass below) and W_ih and W_hh together fit in the L2 caches of the team's cores,
// or, where each member owns whole rows (one thread, or split_by_rows), the members' reads of them
// (each reads both weights whole every step) in 3/8 of the cache the cores share (cache_bytes(2),
// cache_bytes(3), as the CPU reports them; team.h's split_by_rows counts W_hh the same way); else
// the projection is one GEMM per chunk. Measured, T = 50, I = H, time over nn.LSTM's, fused / not:
// 2 threads by rows, H = 300 (2.9 MB of weights) B = 20 0.81-0.90 / 0.97-0.98, B = 64 1.01-1.02 /
// 1.05-1.06; H = 512 (8.4 MB) B = 20 0.92-0.96 / 1.00-1.01, B = 64 1.01-1.08 / 1.08-1.13, B = 256
// 0.96 / 1.02-1.03; H = 650 (13.5 MB) B = 20 0.98-1.02 / 1.03, B = 64 1.04-1.10 / 1.03-1.07; one
// thread, H = 300-650, B = 8-256: 0.84-0.98 / 0.89-1.04. Not so by units (2 threads, B = 5-8,
// H = 512 and 650: 1.03 / 0.99, 0.92 / 0.87: each member reads its share of both weights every step,
// then waits at the barrier), nor where the weights fill the shared cache (H = 1000, 32 MB, this
// machine's whole L3: B = 8 0.76 / 0.65, B = 64 0.95 / 0.92). On a Zen 3 EPYC without AVX-512
// (32 MB of L3 too, shared with other tenants), time fused / not, B = 20: H = 650 1.21 (2 threads),
// 1.26 (one); H = 512 0.95, 1.08; H = 300 0.97, 0.89; B = 64 H = 300-512 0.89-1.03: hence 3/8 of
// the L3 (12 MB), not half (16), which H = 650's 13.5 MB passed. One row (config A of lstmkit
// bench) is bound by reading the weights: 40% slower fused. Two members by rows reading 2 x 8.4 MB
// (H = 512) had a long tail in the hours the shared L3 is busy (the same machine, 2026-12-02, 10-12
// rounds in one process, median / worst over nn.LSTM's, fused / not): B = 20 1.11-1.20 / 1.62-1.97
// against 1.06-1.10 / 1.15-1.41, B = 64 1.11-1.14 / 1.26-1.33 against 1.04-1.16 / 1.21-1.27; within
// the limit H = 400 (2 x 5.1 MB) B = 20 1.05 / 1.31 against 1.12 / 1.17, H = 300 B = 20 0.95 / 0.98
// against 0.97 / 1.26.
// The recurrent weights' bytes (W_hh, and W_hr with a projection), what every step reads: team.h's
// split_by_rows.
inline int64_t recurrent_bytes(const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr) {
  return static_cast<int64_t>(w_hh.nbytes() + (w_hr ? w_hr->nbytes() : 0));
}

inline int64_t fuse_max_bytes(int64_t B, int64_t recurrent) {
  const int n = at::get_num_threads();
  const bool own_rows = n == 1 || split_by_rows(B, n, recurrent);
  return std::max(cache_bytes(2) * n, own_rows ? shared_cache_share() / n : int64_t(0));
}

// The rows one pass of a member's step product takes: its own rows, or every row where the team
// splits by units. The input part is taken in the step only from a full register block of rows
// (kMaxRows, cpu_math.h): with fewer, one GEMM over all T*B rows of the chunk runs at full speed and
// the step's pass does not. Measured, T = 50, I = H, time fused / not: one thread, B = 4, H = 200
// 34.1 / 31.0 us a step, B = 8 53.8 / 54.1 (T = 500: 51.5 / 54.1); two threads by rows, 4 rows each,
// B = 8: H = 128 15.6 / 14.8, 160 23.3 / 21.7, 200 35.8 / 32.7; by units, B = 4, H = 200: 23.5 / 20.3.
inline int64_t rows_per_pass(int64_t B, int64_t recurrent) {
  const int n = at::get_num_threads();
  return n > 1 && split_by_rows(B, n, recurrent) ? (B + n - 1) / n : B;
}

// ---- the cell, one batch row, units [j0, j1) --------------------------------------------------

// z (G) pre-activations in (less the bias b), activated gates [i f g o] out; c = f c_prev + i g;
// r = o tanh(c). Whole vectors with vec_math.h, the ragged end as one vector of fewer lanes
// (load_n / store_n). Each vector's loads come before its stores, so z may be read and written in
// place.
template <typename T>
inline void cell_forward(T* z, const T* b, const T* c_prev, T* c, T* r, int64_t H, int64_t j0, int64_t j1) {
  using V = vec_t<T>;
  constexpr int64_t L = kLanes<T>;
  T *zi = z, *zf = z + H, *zg = z + 2 * H, *zo = z + 3 * H;
  const T *bi = b, *bf = b + H, *bg = b + 2 * H, *bo = b + 3 * H;
  auto units = [&](int64_t j, auto ld, auto st) {                              // the units j.. of one vector
    const V i = vsigmoid<T>(ld(zi + j) + ld(bi + j)), f = vsigmoid<T>(ld(zf + j) + ld(bf + j));
    const V g = vtanh<T>(ld(zg + j) + ld(bg + j)), o = vsigmoid<T>(ld(zo + j) + ld(bo + j));
    const V cj = f * ld(c_prev + j) + i * g;
    st(zi + j, i), st(zf + j, f), st(zg + j, g), st(zo + j, o);
    st(c + j, cj);
    st(r + j, o * vtanh<T>(cj));
  };
  int64_t j = j0;
  for (; j + L <= j1; j += L) units(j, [](const T* p) { return load(p); }, [](T* p, V v) { store(p, v); });
  const int64_t m = j1 - j;
  if (m > 0) units(j, [m](const T* p) { return load_n(p, m); }, [m](T* p, V v) { store_n(p, v, m); });
}

// The mirror: from dr = dL/dr_t and dc = dL/dc_t (the part from step t+1), the gradient of the
// pre-activations dz, and dc becomes dL/dc_{t-1}. tanh(c_t) is recomputed (one tanh per unit),
// cheaper than storing a fourth (T,B,H) tensor. sigma' = y(1 - y), tanh' = 1 - y^2.
// dz may be the gates themselves (each vector's gates are read before its dz is written).
template <typename T>
inline void cell_backward(const T* gate, const T* c, const T* c_prev, const T* dr, T* dc, T* dz,
                          int64_t H, int64_t j0, int64_t j1) {
  using V = vec_t<T>;
  constexpr int64_t L = kLanes<T>;
  const T *gi = gate, *gf = gate + H, *gg = gate + 2 * H, *go = gate + 3 * H;
  T *dzi = dz, *dzf = dz + H, *dzg = dz + 2 * H, *dzo = dz + 3 * H;
  auto units = [&](int64_t j, auto ld, auto st) {
    const V i = ld(gi + j), f = ld(gf + j), g = ld(gg + j), o = ld(go + j), drj = ld(dr + j);
    const V tc = vtanh<T>(ld(c + j));
    const V dcj = ld(dc + j) + drj * o * (T(1) - tc * tc);
    st(dzi + j, dcj * g * i * (T(1) - i));
    st(dzf + j, dcj * ld(c_prev + j) * f * (T(1) - f));
    st(dzg + j, dcj * i * (T(1) - g * g));
    st(dzo + j, drj * tc * o * (T(1) - o));
    st(dc + j, dcj * f);
  };
  int64_t j = j0;
  for (; j + L <= j1; j += L) units(j, [](const T* p) { return load(p); }, [](T* p, V v) { store(p, v); });
  const int64_t m = j1 - j;
  if (m > 0) units(j, [m](const T* p) { return load_n(p, m); }, [m](T* p, V v) { store_n(p, v, m); });
}

// A held step (t >= lengths[b]): gates 0, c_t = c_{t-1}; in backward dz = 0 and dc passes through.
template <typename T>
inline void cell_hold(T* z, const T* c_prev, T* c, int64_t H, int64_t j0, int64_t j1) {
  for (int64_t q = 0; q < 4; ++q) std::fill(z + q * H + j0, z + q * H + j1, T(0));
  std::copy(c_prev + j0, c_prev + j1, c + j0);
}

// ---- forward ----------------------------------------------------------------------------------

// Steps from which the BLAS path copies W_hh^T contiguous rather than handing MKL the transposed view.
constexpr int64_t kCopyMinSteps = 4;

// The recurrent weights as one call's steps read them, prepared once per call and shared by every
// chunk: packed in panels for the hand-written product, or made contiguous for BLAS (MKL is ~25%
// faster on W_hh^T contiguous than on the transposed view at these shapes).
template <typename T>
struct Recurrent {
  bool small, proj;
  int64_t bytes;                                                                // recurrent_bytes
  std::optional<StepWeight<T>> whh, whr, wih;                                   // as (K,N) = W^T
  at::Tensor w_hhT, w_hrT;
  // w_ih given (small path only): each step also takes its input part x_t W_ih^T itself
  Recurrent(const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr, int64_t B, int64_t steps, bool small_,
            const at::Tensor* w_ih = nullptr)
      : small(small_), proj(w_hr.has_value()), bytes(recurrent_bytes(w_hh, w_hr)) {
    if (small) {
      // a team split by units takes a slice of each gate: each gate packed from a panel of its own
      // (the team forward_steps will run: one thread below team_threads' limits, where packing the
      // gates apart would only split each step's product into four narrower ones, 1.4x slower at
      // B = 1, H = 50)
      const int64_t work = B * w_hh.size(0) * (w_hh.size(1) + (w_ih ? w_ih->size(1) : 0));
      const int n = team_threads(work, steps);
      const int64_t gates = n > 1 && !split_by_rows(B, n, bytes) ? 4 : 1;
      whh.emplace(w_hh.t(), B, steps, gates);
      if (proj) whr.emplace(w_hr->t(), B, steps);
      if (w_ih) wih.emplace(w_ih->t(), B, steps, gates);
    } else {                                        // a copy pays for itself over a few steps only
      w_hhT = steps >= kCopyMinSteps ? w_hh.t().contiguous() : w_hh.t();
      if (proj) w_hrT = steps >= kCopyMinSteps ? w_hr->t().contiguous() : w_hr->t();
    }
  }
};

// The forward loop over one chunk's steps (forward_steps below says what each tensor is): the
// cells, the held rows, and the two ways to take the recurrent product.
template <typename T>
struct ForwardLoop {
  const Recurrent<T>& W;
  const at::Tensor &zx, &h0, &gates, &hs, &rbuf;
  const T* bias;
  const int64_t* len;
  int64_t t0, I, T_, B, G, H, P;
  bool cache, proj, inplace;
  const T* px;
  T *pz, *pc, *ph, *r_;
  const T *pzx, *ph0, *pc0;

  ForwardLoop(const Recurrent<T>& W_, const at::Tensor& zx_, const T* bias_, const at::Tensor& h0_,
              const at::Tensor& c0, const int64_t* len_, int64_t t0_, const at::Tensor& gates_, const at::Tensor& cs,
              const at::Tensor& hs_, const at::Tensor& rbuf_, bool cache_, const T* px_, int64_t I_)
      : W(W_), zx(zx_), h0(h0_), gates(gates_), hs(hs_), rbuf(rbuf_), bias(bias_), len(len_), t0(t0_), I(I_),
        T_(hs_.size(0)), B(hs_.size(1)), G(gates_.size(2)), H(G / 4), P(h0_.size(1)), cache(cache_), proj(W_.proj),
        inplace(!px_ && zx_.data_ptr() == gates_.data_ptr()), px(px_), pz(gates_.data_ptr<T>()),
        pc(cs.data_ptr<T>()), ph(hs_.data_ptr<T>()), r_(W_.proj ? rbuf_.data_ptr<T>() : nullptr),
        pzx(px_ ? nullptr : zx_.data_ptr<T>()), ph0(h0_.data_ptr<T>()), pc0(c0.data_ptr<T>()) {}

  // the gates row of step t: one scratch row, or (with the cache, or zx given as gates) row t
  int64_t zslot(int64_t t) const { return gates.size(0) == 1 ? 0 : t; }
  int64_t cslot(int64_t t) const { return cache ? t : t & 1; }
  bool held(int64_t t, int64_t b) const { return len && t0 + t >= len[b]; }

  // the cell for rows [b0, b1) at step t, units [j0, j1): z_t (already zx_t + h_{t-1} W_hh^T) -> gates, c_t, r_t
  void cells(int64_t t, int64_t j0, int64_t j1, int64_t b0, int64_t b1) const {
    const T* hp = t ? ph + (t - 1) * B * P : ph0;                               // (B,P) h_{t-1}
    const T* cp = t ? pc + cslot(t - 1) * B * H : pc0;                          // (B,H) c_{t-1}
    T *z = pz + zslot(t) * B * G, *c = pc + cslot(t) * B * H, *h = ph + t * B * P, *r = proj ? r_ : h;
    for (int64_t b = b0; b < b1; ++b) {
      if (held(t, b)) {
        cell_hold(z + b * G, cp + b * H, c + b * H, H, j0, j1);
        if (!proj) std::copy(hp + b * P + j0, hp + b * P + j1, h + b * P + j0);
      } else {
        cell_forward(z + b * G, bias, cp + b * H, c + b * H, r + b * H, H, j0, j1);
      }
    }
  }

  // held rows of [b0, b1) keep h_{t-1} (with a projection, after h_t = r_t W_hr^T), columns [p0, p1)
  void hold_h(int64_t t, int64_t p0, int64_t p1, int64_t b0, int64_t b1) const {
    const T* hp = t ? ph + (t - 1) * B * P : ph0;
    for (int64_t b = b0; b < b1; ++b)
      if (held(t, b)) std::copy(hp + b * P + p0, hp + b * P + p1, ph + t * B * P + b * P + p0);
  }

  // out (nb,G) = init + x w^T over units [j0, j1) of the four gates: one range [0, G) when that is
  // every unit (fewer, wider pieces: at B = 1 the narrow ones are latency-bound)
  void gate_product(const StepWeight<T>& w, T* out, const T* init, const T* x, int64_t ldx, int64_t nb, int64_t j0,
                    int64_t j1, bool rev) const {
    if (j0 == 0 && j1 == H) return w.product(out, G, init, G, x, ldx, nb, 0, G, rev);
    for (int64_t i = 0; i < 4; ++i) {
      const int64_t q = rev ? 3 - i : i;
      w.product(out, G, init, G, x, ldx, nb, q * H + j0, q * H + j1, rev);
    }
  }

  // One member of the team (hand-written product): by rows it runs the recurrence of its own rows,
  // all units, and never waits; else it owns a slice of units of every row and the team meets once
  // a step (twice with a projection; see team_split). With x given (px), each step's input part
  // x_t W_ih^T is taken here too, step t+1's before the barrier that ends step t, where the member
  // would otherwise wait (the recurrence of step t+1 needs all of h_t; the input part does not).
  void member(int rank, int size) const {
    const Split sp = team_split<T>(B, H, P, rank, size, true);
    auto input_part = [&](int64_t t) {                                          // z_t = x_t W_ih^T, own parts
      sp.parts([&](int64_t r0, int64_t r1, int64_t u0, int64_t u1) {
        gate_product(*W.wih, pz + (zslot(t) * B + r0) * G, nullptr, px + (t * B + r0) * I, I, r1 - r0, u0, u1, t & 1);
      });
    };
    if (px) input_part(0);
    for (int64_t t = 0; t < T_; ++t) {
      const T* hp = t ? ph + (t - 1) * B * P : ph0;                               // (B,P) h_{t-1}
      sp.parts([&](int64_t r0, int64_t r1, int64_t u0, int64_t u1) {
        T* z = pz + (zslot(t) * B + r0) * G;
        // alternate the panel order step by step: see StepWeight::product
        gate_product(*W.whh, z, px ? z : pzx + (t * B + r0) * G, hp + r0 * P, P, r1 - r0, u0, u1, t & 1);
        cells(t, u0, u1, r0, r1);
      });
      if (px && t + 1 < T_) input_part(t + 1);
      if (!sp.by_rows) team_barrier();
      if (!proj) continue;
      W.whr->product(ph + (t * B + sp.b0) * P, P, static_cast<const T*>(nullptr), 0, r_ + sp.b0 * H, H, sp.b1 - sp.b0,
                     sp.p0, sp.p1);
      hold_h(t, sp.p0, sp.p1, sp.b0, sp.b1);
      if (!sp.by_rows) team_barrier();
    }
  }

  // BLAS per step: z_t = zx_t + h_{t-1} W_hh^T (gemm.h), then the cells by rows.
  void blas() const {
    for (int64_t t = 0; t < T_; ++t) {
      at::Tensor z_t = gates[zslot(t)];
      if (!inplace) z_t.copy_(zx[t]);
      gemm_out(z_t, t ? hs[t - 1] : h0, W.w_hhT, true);
      parallel_rows(0, B, 1, [&](int64_t b0, int64_t b1) { cells(t, 0, H, b0, b1); });
      if (!proj) continue;
      at::Tensor h_t = hs[t];
      gemm_out(h_t, rbuf, W.w_hrT, false);
      hold_h(t, 0, P, 0, B);
    }
  }
};

// Steps [0, n) of a chunk that starts at step t0 of the sequence (t0 only shifts the lengths).
// zx (n,B,G) pre-activations from the input, without the bias b (G); gates (n,B,G), which may be
// zx itself (overwritten step by step), or without the cache a (1,B,G) scratch row; cs (n,B,H),
// or without the cache a (2,B,H) scratch; hs (n,B,P), written in place (may be a slice of the
// caller's output); h0 (B,P), c0 (B,H) the state before the chunk; rbuf (B,H) scratch for r_t
// with a projection. With x (n,B,I) given (px, and W.wih), zx is not read: each step computes
// x_t W_ih^T into its gates row itself (ForwardLoop::member). Returns the slot of cs that holds
// the chunk's last cell state.
template <typename T>
int64_t forward_steps(const Recurrent<T>& W, const at::Tensor& zx, const T* bias, const at::Tensor& h0,
                      const at::Tensor& c0, const int64_t* len, int64_t t0, at::Tensor& gates, at::Tensor& cs,
                      at::Tensor& hs, const at::Tensor& rbuf, bool cache, const T* px = nullptr, int64_t I = 0) {
  TORCH_CHECK(!px || (W.small && W.wih), "the input part in the step needs the hand-written product");
  const ForwardLoop<T> loop(W, zx, bias, h0, c0, len, t0, gates, cs, hs, rbuf, cache, px, I);
  if (W.small)
    run_team(loop.B * loop.G * (loop.P + I), loop.T_, loop.B, [&](int rank, int size) { loop.member(rank, size); },
             W.bytes);
  else
    loop.blas();
  return loop.cslot(loop.T_ - 1);
}

// ---- backward ---------------------------------------------------------------------------------

// The backward loop over time (backward_impl below says what each tensor is): the gradient reaching
// h_t, the cells' backward, and the two ways to take dh_{t-1} = dz_t W_hh.
template <typename T>
struct BackwardLoop {
  const at::Tensor &dhs, &dz, &w_hh, &dh0;
  const c10::optional<at::Tensor>& w_hr;
  const int64_t* len;
  int64_t T_, B, P, G, H;
  bool proj, small;
  at::Tensor dh_buf, drbuf;                          // (2,B,P) dh_t and dh_{t+1}; (B,H) dr_t with a projection
  T *pdz, *dc, *pdh, *dr_, *pdht;
  const T *pg, *pc, *pdhs, *pc0;
  std::optional<StepWeight<T>> whh, whr;             // W_hh (G,P), W_hr (P,H) as (K,N)

  BackwardLoop(const at::Tensor& dhs_, const at::Tensor& gates, const at::Tensor& cs, const at::Tensor& c0,
               const at::Tensor& w_hh_, const c10::optional<at::Tensor>& w_hr_, const int64_t* len_, at::Tensor& dz_,
               at::Tensor& dh0_, at::Tensor& dc0, at::Tensor& dhtot, bool small_)
      : dhs(dhs_), dz(dz_), w_hh(w_hh_), dh0(dh0_), w_hr(w_hr_), len(len_), T_(dhs_.size(0)), B(dhs_.size(1)),
        P(dhs_.size(2)), G(gates.size(2)), H(G / 4), proj(w_hr_.has_value()), small(small_),
        dh_buf(at::zeros({2, B, P}, dhs_.options())),
        drbuf(proj ? at::empty({B, H}, dhs_.options()) : at::Tensor()), pdz(dz_.data_ptr<T>()),
        dc(dc0.data_ptr<T>()), pdh(dh_buf.data_ptr<T>()), dr_(proj ? drbuf.data_ptr<T>() : nullptr),
        pdht(proj ? dhtot.data_ptr<T>() : nullptr), pg(gates.data_ptr<T>()), pc(cs.data_ptr<T>()),
        pdhs(dhs_.data_ptr<T>()), pc0(c0.data_ptr<T>()) {
    if (small) whh.emplace(w_hh, B, T_);
    if (small && proj) whr.emplace(*w_hr, B, T_);
  }

  bool held(int64_t s, int64_t b) const { return len && s >= len[b]; }
  T* dh_at(int64_t t) const { return pdh + (t & 1) * B * P; }                   // (B,P) total at h_t

  // dh_t = dhs_t + dz_{t+1} W_hh (+ dh_{t+1} where step t+1 was held: it passed straight through);
  // with a projection also dhtot_t (zero at held steps). Columns [p0, p1) of rows [b0, b1).
  void dh_cols(int64_t t, int64_t p0, int64_t p1, int64_t b0, int64_t b1) const {
    T* dh = dh_at(t);
    const T* dh_next = dh_at(t + 1);
    if (t + 1 < T_) {
      if (small)
        whh->product(dh + b0 * P, P, pdhs + (t * B + b0) * P, P, pdz + ((t + 1) * B + b0) * G, G, b1 - b0, p0, p1,
                     t & 1);
      for (int64_t b = b0; b < b1; ++b)
        if (held(t + 1, b))
          for (int64_t p = p0; p < p1; ++p) dh[b * P + p] += dh_next[b * P + p];
    } else {
      for (int64_t b = b0; b < b1; ++b)
        std::copy(pdhs + (t * B + b) * P + p0, pdhs + (t * B + b) * P + p1, dh + b * P + p0);
    }
    if (proj)
      for (int64_t b = b0; b < b1; ++b) {
        T* dht = pdht + (t * B + b) * P;
        if (held(t, b)) std::fill(dht + p0, dht + p1, T(0));
        else std::copy(dh + b * P + p0, dh + b * P + p1, dht + p0);
      }
  }

  // the cell's backward for rows [b0, b1) at step t, units [j0, j1): dz_t, and dc becomes dL/dc_{t-1}
  void cells(int64_t t, int64_t j0, int64_t j1, int64_t b0, int64_t b1) const {
    const T* cp = t ? pc + (t - 1) * B * H : pc0;
    const T* dr = proj ? dr_ : dh_at(t);
    for (int64_t b = b0; b < b1; ++b) {
      T* dzt = pdz + (t * B + b) * G;
      if (held(t, b)) {
        for (int64_t q = 0; q < 4; ++q) std::fill(dzt + q * H + j0, dzt + q * H + j1, T(0));
      } else {
        cell_backward(pg + (t * B + b) * G, pc + (t * B + b) * H, cp + b * H, dr + b * H, dc + b * H, dzt, H, j0, j1);
      }
    }
  }

  // One member of the team (hand-written product), split as in forward; then dh0 = dz_0 W_hh.
  void member(int rank, int size) const {
    const Split sp = team_split<T>(B, H, P, rank, size, true);
    const int64_t b0 = sp.b0, b1 = sp.b1, p0 = sp.p0, p1 = sp.p1;
    auto meet = [&] { if (!sp.by_rows) team_barrier(); };
    for (int64_t t = T_ - 1; t >= 0; --t) {
      if (!proj) {                                     // P == H: a member's columns are its units
        sp.parts([&](int64_t r0, int64_t r1, int64_t u0, int64_t u1) {
          dh_cols(t, u0, u1, r0, r1);
          cells(t, u0, u1, r0, r1);
        });
        meet();
        continue;
      }
      dh_cols(t, p0, p1, b0, b1);
      meet();
      sp.parts([&](int64_t r0, int64_t r1, int64_t u0, int64_t u1) {   // dr = dh W_hr, then the cell
        whr->product(dr_ + r0 * H, H, static_cast<const T*>(nullptr), 0, dh_at(t) + r0 * P, P, r1 - r0, u0, u1);
        cells(t, u0, u1, r0, r1);
      });
      meet();
    }
    whh->product(dh0.data_ptr<T>() + b0 * P, P, static_cast<const T*>(nullptr), 0, pdz + b0 * G, G, b1 - b0, p0, p1);
  }

  // BLAS per step: dh_{t-1} by MKL, the held and dhtot parts and the cells by rows.
  void blas() const {
    for (int64_t t = T_ - 1; t >= 0; --t) {
      at::Tensor dh_t = dh_buf[t & 1];
      if (t + 1 < T_) {
        dh_t.copy_(dhs[t]);
        gemm_out(dh_t, dz[t + 1], w_hh, true);
      }
      dh_cols(t, 0, P, 0, B);
      if (proj) {
        at::Tensor dr = drbuf;
        gemm_out(dr, dh_t, *w_hr, false);
      }
      parallel_rows(0, B, 1, [&](int64_t b0, int64_t b1) { cells(t, 0, H, b0, b1); });
    }
    at::Tensor dh0_ = dh0;
    gemm_out(dh0_, dz[0], w_hh, false);                // dh0 = dz_0 W_hh (step 0 runs)
  }
};

template <typename T>
void backward_impl(const at::Tensor& dhs, const at::Tensor& dc_last, const at::Tensor& gates,
                   const at::Tensor& cs, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
                   const c10::optional<at::Tensor>& w_hr, const int64_t* len, at::Tensor& dz, at::Tensor& dh0,
                   at::Tensor& dc0, at::Tensor& dhtot, bool small) {
  dc0.copy_(dc_last);                                                           // dc runs in place
  const BackwardLoop<T> loop(dhs, gates, cs, c0, w_hh, w_hr, len, dz, dh0, dc0, dhtot, small);
  if (small)
    run_team(loop.B * loop.G * loop.P, loop.T_, loop.B, [&](int rank, int size) { loop.member(rank, size); },
             recurrent_bytes(w_hh, w_hr));
  else
    loop.blas();
}

// ---- entry points -----------------------------------------------------------------------------
// Each checks every argument first (checks.h): no call from Python reads or writes out of bounds.
// T = 0 is refused (as torch.nn does); B = 0 gives empty outputs without running the loop.

// P, the projection size: w_hr's rows (at least one), else H.
static int64_t proj_size(const Checks& c, const c10::optional<at::Tensor>& w_hr, int64_t H) {
  if (!w_hr) return H;
  c.rank("w_hr", *w_hr, 2, "(P, H)");
  TORCH_CHECK(w_hr->size(0) >= 1, c.fn, ": w_hr should have shape (P, H) with P >= 1, got ", shape_str(w_hr->sizes()));
  return w_hr->size(0);
}

// What every LSTM entry point takes: h0 (B,P), c0 (B,H), w_hh (4H,P), w_hr (P,H) or none; the path.
static void check_recurrent(const Checks& c, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
                            const c10::optional<at::Tensor>& w_hr, int64_t B, int64_t H, int64_t P, int64_t path) {
  c.tensor("h0", h0, w_hr ? "(B, P)" : "(B, H)", {B, P});
  c.tensor("c0", c0, "(B, H)", {B, H});
  c.tensor("w_hh", w_hh, w_hr ? "(4H, P)" : "(4H, H)", {4 * H, P});
  c.optional("w_hr", w_hr, "(P, H)", {P, H});
  TORCH_CHECK(path == kAuto || path == kSmall || path == kBlas, c.fn,
              ": path should be 0 (auto), 1 (hand-written product) or 2 (BLAS per step), got ", path);
}

// The recurrence alone, over given pre-activations (the contract of lstm_recurrence_forward).
std::vector<at::Tensor> lstm_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& c0,
                                     const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
                                     const c10::optional<at::Tensor>& lengths, int64_t path, bool cache) {
  const Checks c("lstm_forward", "zx", zx);
  c.rank("zx", zx, 3, "(T, B, 4H)");
  const int64_t T_ = zx.size(0), B = zx.size(1), G = zx.size(2), H = G / 4;
  c.steps("zx", T_);
  c.hidden("zx", "last dimension", G, 4, "4H");
  const int64_t P = proj_size(c, w_hr, H);
  c.tensor("zx", zx, "(T, B, 4H)", {T_, B, G});
  check_recurrent(c, h0, c0, w_hh, w_hr, B, H, P, path);
  const int64_t* len = c.lengths(lengths, T_, B);
  at::Tensor gates = at::empty({cache ? T_ : 1, B, 4 * H}, zx.options());
  at::Tensor cs = at::empty({cache ? T_ : std::min<int64_t>(T_, 2), B, H}, zx.options());
  at::Tensor hs = at::empty({T_, B, P}, zx.options());
  at::Tensor rbuf = w_hr ? at::empty({B, H}, zx.options()) : at::Tensor();
  const at::Tensor bias = at::zeros({4 * H}, zx.options());
  int64_t last = 0;
  if (B > 0) AT_DISPATCH_FLOATING_TYPES(zx.scalar_type(), "lstm_forward", [&] {
    const Recurrent<scalar_t> W(w_hh, w_hr, B, T_, use_small(path, B, limit(kSmallForwardRows), T_));
    last = forward_steps<scalar_t>(W, zx, bias.data_ptr<scalar_t>(), h0, c0, len, 0, gates, cs, hs, rbuf, cache);
  });
  if (!cache) return {at::Tensor(), cs.narrow(0, last, 1), hs};                // c_{T-1} as (1,B,H)
  return {gates, cs, hs};
}

// One call of lstm_layer_forward, its arguments checked: what each of its three ways reads.
struct LayerCall {
  at::Tensor x, h0, c0, w_ih, w_hh, b;               // b (G,): the bias added in the cell (zeros without one)
  c10::optional<at::Tensor> w_hr;
  const int64_t* len;
  int64_t T_, B, I, G, H, P;
  bool small, fuse;
  at::Tensor hs, rbuf;                               // (T,B,P) the states, written in place; (B,H) r_t scratch

  template <typename T>
  int64_t steps(const Recurrent<T>& W, const at::Tensor& zx, const at::Tensor& h_before, const at::Tensor& c_before,
                int64_t t0, at::Tensor& gates, at::Tensor& cs, at::Tensor hs_part, bool cache, bool fused) const {
    return forward_steps<T>(W, zx, b.data_ptr<T>(), h_before, c_before, len, t0, gates, cs, hs_part, rbuf, cache,
                            fused ? x.data_ptr<T>() : nullptr, I);
  }
};

// With the cache: zx = x W_ih^T as one product straight into the gates tensor (or, fused, each
// step's input part in the step), which the recurrence overwrites step by step with the gates.
static std::vector<at::Tensor> layer_forward_cached(const LayerCall& L, const c10::optional<at::Tensor>& gates_out) {
  at::Tensor gates = gates_out ? *gates_out : at::empty({L.T_, L.B, L.G}, L.x.options());
  at::Tensor cs = at::empty({L.T_, L.B, L.H}, L.x.options());
  if (!L.fuse) {
    at::Tensor zx2 = gates.view({L.T_ * L.B, L.G});
    gemm_out(zx2, L.x.view({L.T_ * L.B, L.I}), L.w_ih.t(), false);
  }
  AT_DISPATCH_FLOATING_TYPES(L.x.scalar_type(), "lstm_layer_forward", [&] {
    const Recurrent<scalar_t> W(L.w_hh, L.w_hr, L.B, L.T_, L.small, L.fuse ? &L.w_ih : nullptr);
    L.steps<scalar_t>(W, gates, L.h0, L.c0, 0, gates, cs, L.hs, true, L.fuse);
  });
  return {gates, cs, L.hs};
}

// Without the cache, fused: no zx at all, x_t W_ih^T taken in the step; gates and cells in scratch rows.
static std::vector<at::Tensor> layer_forward_fused(const LayerCall& L) {
  at::Tensor z = at::empty({1, L.B, L.G}, L.x.options()), cs = at::empty({2, L.B, L.H}, L.x.options());
  int64_t last = 0;
  AT_DISPATCH_FLOATING_TYPES(L.x.scalar_type(), "lstm_layer_forward", [&] {
    const Recurrent<scalar_t> W(L.w_hh, L.w_hr, L.B, L.T_, true, &L.w_ih);
    last = L.steps<scalar_t>(W, at::Tensor(), L.h0, L.c0, 0, z, cs, L.hs, false, true);
  });
  return {at::Tensor(), cs.narrow(0, last, 1), L.hs};                           // c_{T-1} as (1,B,H)
}

// Without the cache: zx in chunks of about chunk_elems elements into one reused buffer, which the
// chunk's steps then overwrite with their gates; each chunk's states written straight into their
// place in hs (nothing concatenated, no whole-sequence zx).
static std::vector<at::Tensor> layer_forward_chunked(const LayerCall& L, int64_t chunk_elems) {
  const int64_t B = L.B, G = L.G;
  const int64_t steps = std::max<int64_t>(1, std::min<int64_t>(L.T_, chunk_elems / std::max<int64_t>(1, B * G)));
  at::Tensor zx = at::empty({steps, B, G}, L.x.options());                      // reused by every chunk
  at::Tensor cs = at::empty({2, B, L.H}, L.x.options());
  at::Tensor c_carry = L.c0;                                                     // (B,H) c before the chunk
  AT_DISPATCH_FLOATING_TYPES(L.x.scalar_type(), "lstm_layer_forward", [&] {
    const Recurrent<scalar_t> W(L.w_hh, L.w_hr, B, L.T_, L.small);
    for (int64_t t0 = 0; t0 < L.T_; t0 += steps) {
      const int64_t n = std::min(steps, L.T_ - t0);
      at::Tensor zx_n = zx.narrow(0, 0, n);
      at::Tensor zx2 = zx_n.view({n * B, G});
      gemm_out(zx2, L.x.narrow(0, t0, n).view({n * B, L.I}), L.w_ih.t(), false);
      const at::Tensor h_before = t0 ? L.hs[t0 - 1] : L.h0;
      const int64_t last = L.steps<scalar_t>(W, zx_n, h_before, c_carry, t0, zx_n, cs, L.hs.narrow(0, t0, n), false,
                                             false);
      c_carry = cs[last].clone();
    }
  });
  return {at::Tensor(), c_carry.unsqueeze(0), L.hs};                            // c_{T-1} as (1,B,H)
}

// gates_out (cache only), where given, must be apart from everything the call reads.
using Named = std::pair<const at::Tensor*, const char*>;
using NamedOptional = std::pair<const c10::optional<at::Tensor>*, const char*>;
static void check_gates_out(const Checks& c, const c10::optional<at::Tensor>& gates_out, bool cache,
                            const std::array<int64_t, 3>& shape, const std::vector<Named>& read,
                            const std::vector<NamedOptional>& read_optional) {
  if (!gates_out) return;
  TORCH_CHECK(cache, c.fn, ": gates_out is for cache=True (without the cache no gates are kept)");
  c.tensor("gates_out", *gates_out, "(T, B, 4H)", {shape[0], shape[1], shape[2]});
  for (auto [t, n] : read) c.apart("gates_out", *gates_out, n, *t);
  for (auto [t, n] : read_optional) c.apart("gates_out", *gates_out, n, *t);
}

// A whole layer's forward: the input projection and the recurrence, in one call.
// With the cache, zx = x W_ih^T is one product written straight into the gates tensor, which the
// recurrence then overwrites step by step with the activated gates (no separate zx). Without it,
// zx is taken in chunks of about chunk_elems elements into one reused buffer, and each chunk's
// states are written straight into their place in hs: nothing is concatenated, and no buffer the
// size of the whole sequence's zx is allocated (and page-faulted) on every call. gates_out, where
// given (cache only), is the (T,B,4H) tensor to write the gates into (a buffer kept from an earlier step).
std::vector<at::Tensor> lstm_layer_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                           const at::Tensor& w_ih, const at::Tensor& w_hh,
                                           const c10::optional<at::Tensor>& bias,
                                           const c10::optional<at::Tensor>& w_hr,
                                           const c10::optional<at::Tensor>& lengths, int64_t path, bool cache,
                                           int64_t chunk_elems, const c10::optional<at::Tensor>& gates_out) {
  const Checks c("lstm_layer_forward", "x", x);
  c.rank("x", x, 3, "(T, B, I)");
  c.rank("w_ih", w_ih, 2, "(4H, I)");
  const int64_t T_ = x.size(0), B = x.size(1), I = x.size(2), G = w_ih.size(0), H = G / 4;
  c.steps("x", T_);
  c.hidden("w_ih", "first dimension", G, 4, "4H");
  const int64_t P = proj_size(c, w_hr, H);
  c.tensor("x", x, "(T, B, I)", {T_, B, I});
  c.tensor("w_ih", w_ih, "(4H, I)", {G, I});
  check_recurrent(c, h0, c0, w_hh, w_hr, B, H, P, path);
  c.optional("bias", bias, "(4H,)", {G});
  const int64_t* len = c.lengths(lengths, T_, B);
  TORCH_CHECK(chunk_elems > 0, c.fn, ": chunk_elems should be positive, got ", chunk_elems);
  check_gates_out(c, gates_out, cache, {T_, B, G},
                  {{&x, "x"}, {&h0, "h0"}, {&c0, "c0"}, {&w_ih, "w_ih"}, {&w_hh, "w_hh"}},
                  {{&bias, "bias"}, {&w_hr, "w_hr"}, {&lengths, "lengths"}});
  if (B == 0)                                                                   // nothing to compute
    return {cache ? (gates_out ? *gates_out : at::empty({T_, 0, G}, x.options())) : at::Tensor(),
            at::empty({cache ? T_ : 1, 0, H}, x.options()), at::empty({T_, 0, P}, x.options())};
  const int64_t weight_bytes = G * (I + P) * static_cast<int64_t>(x.element_size());
  const bool small = use_small(path, B, limit(kSmallForwardRows), T_);
  // one step (streaming) also fuses: a BLAS call for one row's projection costs more than the product;
  // I = 0 does not (an empty x has no data pointer, and a null one means "zx given" to forward_steps)
  const int64_t recurrent = recurrent_bytes(w_hh, w_hr);
  const bool fuse = small && I > 0 &&
                    (T_ == 1 || (B >= limit(kFuseMinRows) && rows_per_pass(B, recurrent) >= kMaxRows &&
                                 weight_bytes <= fuse_max_bytes(B, recurrent)));
  const LayerCall L{x, h0, c0, w_ih, w_hh, bias ? *bias : at::zeros({G}, x.options()), w_hr, len, T_, B, I, G, H, P,
                    small, fuse, at::empty({T_, B, P}, x.options()),
                    w_hr ? at::empty({B, H}, x.options()) : at::Tensor()};
  if (cache) return layer_forward_cached(L, gates_out);
  return fuse ? layer_forward_fused(L) : layer_forward_chunked(L, chunk_elems);
}

std::vector<at::Tensor> lstm_backward(const at::Tensor& dhs, const at::Tensor& dc_last, const at::Tensor& gates,
                                      const at::Tensor& cs, const at::Tensor& h0, const at::Tensor& c0,
                                      const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
                                      const c10::optional<at::Tensor>& lengths, int64_t path, bool overwrite) {
  const Checks c("lstm_backward", "dhs", dhs);
  c.rank("dhs", dhs, 3, "(T, B, P)");
  c.rank("gates", gates, 3, "(T, B, 4H)");
  const int64_t T_ = dhs.size(0), B = dhs.size(1), G = gates.size(2), H = G / 4;
  c.steps("dhs", T_);
  c.hidden("gates", "last dimension", G, 4, "4H");
  const int64_t P = proj_size(c, w_hr, H);
  c.tensor("dhs", dhs, w_hr ? "(T, B, P)" : "(T, B, H)", {T_, B, P});
  c.tensor("dc_last", dc_last, "(B, H)", {B, H});
  c.tensor("gates", gates, "(T, B, 4H)", {T_, B, G});
  c.tensor("cs", cs, "(T, B, H)", {T_, B, H});
  check_recurrent(c, h0, c0, w_hh, w_hr, B, H, P, path);
  const int64_t* len = c.lengths(lengths, T_, B);
  if (overwrite) {                                                              // dz is written over gates
    for (auto [t, n] : {std::pair{&dhs, "dhs"}, {&dc_last, "dc_last"}, {&cs, "cs"}, {&c0, "c0"}, {&w_hh, "w_hh"}})
      c.apart("gates", gates, n, *t);
    c.apart("gates", gates, "w_hr", w_hr);
    c.apart("gates", gates, "lengths", lengths);
  }
  at::Tensor dz = overwrite ? gates : at::empty_like(gates), dh0 = at::empty_like(h0), dc0 = at::empty_like(c0);
  at::Tensor dhtot = w_hr ? at::empty_like(dhs) : at::Tensor();
  if (B > 0) AT_DISPATCH_FLOATING_TYPES(dhs.scalar_type(), "lstm_backward", [&] {
    backward_impl<scalar_t>(dhs, dc_last, gates, cs, h0, c0, w_hh, w_hr, len, dz, dh0, dc0, dhtot,
                            use_small(path, B, limit(kSmallBackwardRows), T_));
  });
  return {dz, dh0, dc0, dhtot};
}

// One step of one row with its input projection, for a cell called from Python (lstm_cell_forward,
// cell_cpu.cpp): each member's own units of z = x W_ih^T + h W_hh^T (one_step.h), then the cell (b
// added there). z (4H,) becomes the activated gates [i f g o].
template <typename T>
void lstm_row_step_impl(const T* x, const T* h, const T* c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                        const T* b, T* z, T* c, T* out, int64_t I, int64_t H) {
  run_one_step<T>(4 * H * (I + H), 1, H, [&](int64_t j0, int64_t j1) {
    gates_product(z, static_cast<const T*>(nullptr), x, w_ih, 4, H, j0, j1);
    gates_product(z, z, h, w_hh, 4, H, j0, j1);
    cell_forward(z, b, c0, c, out, H, j0, j1);
  });
}

// Gate elements below which a rows step's cells run on the calling thread: waking a team for them
// costs more than they take (the cells of B = 8 rows of H = 128: ~3 us).
constexpr int64_t kCellRowsWork = int64_t(1) << 14;

// Rows where rows_step_by_team: one team on the weights as stored (one_step.h's rows_team_step),
// z = x W_ih^T + h W_hh^T in one buffer, then each member's units' cells (b added there).
template <typename T>
void lstm_rows_team_impl(const T* x, const T* h, const T* c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const T* b, T* z, T* c, T* out, int64_t B, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  rows_team_step<T>(x, h, w_ih, w_hh, 4, B, I, H, z, nullptr, z, nullptr, [&](int64_t j0, int64_t j1) {
    for (int64_t r = 0; r < B; ++r) cell_forward(z + r * G, b, c0 + r * H, c + r * H, out + r * H, H, j0, j1);
  });
}

// Rows elsewhere: the very calls of lstm_layer_forward's BLAS step over a one-step sequence,
// z = x W_ih^T, then z += h W_hh^T (gemm.h, the weights as stored), then the cell by rows (b added
// there); without the layer's buffers for a sequence, its ATen bias sum, views and copies, and its
// thread team for a few rows' cells (that layer call took 25-35 us more at B = 8, I = H = 128).
template <typename T>
void lstm_rows_step_impl(const at::Tensor& x, const at::Tensor& h, const T* c0, const at::Tensor& w_ih,
                         const at::Tensor& w_hh, const T* b, at::Tensor& z, T* c, T* out, int64_t B, int64_t H) {
  gemm_out(z, x, w_ih.t(), false);                                              // (B,4H) x W_ih^T
  gemm_out(z, h, w_hh.t(), true);                                               //  + h W_hh^T
  const int64_t G = 4 * H;
  T* pz = z.data_ptr<T>();
  parallel_rows(0, B, std::max<int64_t>(1, kCellRowsWork / G), [&](int64_t b0, int64_t b1) {
    for (int64_t r = b0; r < b1; ++r) cell_forward(pz + r * G, b, c0 + r * H, c + r * H, out + r * H, H, 0, H);
  });
}

// -> {h', c'} or, with cache, {h', c', gates (B,4H)}: x (B,I), w_ih (4H,I) and both biases checked by
// the caller (cell_cpu.cpp), the rest here; b_ih + b_hh by summed_bias (one_step.h). One row: the
// team's dot products (lstm_row_step_impl); rows: a team on the weights as stored
// (lstm_rows_team_impl, where rows_step_by_team) or two GEMM calls (lstm_rows_step_impl; always
// with gemm_calls, the cell's path 2).
std::vector<at::Tensor> lstm_one_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& c0,
                                      const at::Tensor& w_ih, const at::Tensor& w_hh,
                                      const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                                      bool cache, bool gemm_calls) {
  const Checks c("lstm_cell_forward", "x", x);
  const int64_t B = x.size(0), I = x.size(1), H = w_ih.size(0) / 4;
  c.tensor("h", h, "(B, H)", {B, H});
  c.tensor("c", c0, "(B, H)", {B, H});
  c.tensor("w_hh", w_hh, "(4H, H)", {4 * H, H});
  at::Tensor z = at::empty({B, 4 * H}, x.options()), c1 = at::empty({B, H}, x.options());
  at::Tensor out = at::empty({B, H}, x.options());
  if (B > 0 && H > 0) AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_one_step", [&] {
    std::vector<scalar_t> bias = summed_bias<scalar_t>(b_ih, b_hh, 4 * H);
    bias.resize(4 * H, scalar_t(0));                                            // none: zeros for cell_forward
    if (B == 1)
      lstm_row_step_impl<scalar_t>(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), c0.data_ptr<scalar_t>(), w_ih,
                                   w_hh, bias.data(), z.data_ptr<scalar_t>(), c1.data_ptr<scalar_t>(),
                                   out.data_ptr<scalar_t>(), I, H);
    else if (!gemm_calls && rows_step_by_team(x, H, 4))
      lstm_rows_team_impl<scalar_t>(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), c0.data_ptr<scalar_t>(), w_ih,
                                    w_hh, bias.data(), z.data_ptr<scalar_t>(), c1.data_ptr<scalar_t>(),
                                    out.data_ptr<scalar_t>(), B, I, H);
    else
      lstm_rows_step_impl<scalar_t>(x, h, c0.data_ptr<scalar_t>(), w_ih, w_hh, bias.data(), z,
                                    c1.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, H);
  });
  if (!cache) return {out, c1};
  return {out, c1, z};
}

}  // namespace lstmkit
