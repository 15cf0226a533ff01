// cell_cpu.cpp: one step of LSTMCell, GRUCell or RNNCell in one call, and its backward in one call.
//
// What it is: the cells' compiled step. Forward: for one row one kernel a cell for a step with its
// input projection (lstm_one_step, gru_one_step, rnn_one_step, in the files of their layers;
// one_step.h); rows where the weights fit the team's L2 caches: one team on the weights as stored
// (one_step.h's rows_step_by_team); the LSTM and RNN cells' other rows: two products by gemm.h into
// one buffer, then the cell by loops (lstm_one_step, rnn_one_step); the GRU cell's other rows: the
// recurrence over a one-step sequence, with gemm.h's products. Backward:
// the recurrences' backward over a one-step sequence (their checks, their cell math), the weight
// gradients here. A cell called step by step from Python pays one call each way instead of a
// layer's operator machinery. cache=false: only the new state (inference); cache=true: also what the
// backward reads. The cells' autograd nodes, which call these, are in cell_autograd.cpp.
// What it is not: a new recurrence; lstmkit/modules/cells.py takes these only where nothing
// observes the operators.
// Dimensions: B batch, I input, H hidden.
#include <torch/extension.h>

#include <functional>

#include "checks.h"
#include "entries.h"
#include "gemm.h"
#include "one_step.h"

namespace lstmkit {

// x (B,I) and w_ih (G,I) with G = gates * H, and the biases (G,) both or neither, checked (the
// state and w_hh are checked by the step's kernel).
static void check_cell(const Checks& c, const at::Tensor& x, const at::Tensor& w_ih, int64_t gates,
                                         const char* sym, const c10::optional<at::Tensor>& b_ih,
                                         const c10::optional<at::Tensor>& b_hh) {
  c.rank("x", x, 2, "(B, I)");
  c.rank("w_ih", w_ih, 2, sym);
  const int64_t B = x.size(0), I = x.size(1), G = w_ih.size(0);
  c.hidden("w_ih", "first dimension", G, gates, sym);
  c.tensor("x", x, "(B, I)", {B, I});
  c.tensor("w_ih", w_ih, sym, {G, I});
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(), c.fn, ": b_ih and b_hh should both be given or both be None");
  c.optional("b_ih", b_ih, "(G,)", {G});
  c.optional("b_hh", b_hh, "(G,)", {G});
}

// zx (1,B,G) = x W_ih^T (+ bias): the input projection of the one step, by gemm.h (W_ih as stored).
static at::Tensor project(const at::Tensor& x, const at::Tensor& w_ih, const c10::optional<at::Tensor>& bias) {
  return gemm_new(x, w_ih.t(), bias).unsqueeze(0);
}

// Which kernel a step takes. One row: the cell's one-step kernel (one_step.h: dot products against
// the weights as stored, the bias summed by a loop; no ATen operator). Rows: packing the weights for
// one step costs about as much as the product until ~20 rows (a copy of W against 2B flops per
// weight), so no cell packs W for a step of rows: where W_ih and W_hh fit the team's L2 caches
// (one_step.h's rows_step_by_team, two threads or more), one team on the weights as stored
// (rows_team_step); else gemm.h's products on the weights as stored (by hand up to kNtMaxRows rows at
// two threads, nt_gemm.h; ATen's GEMM beyond and at one thread for W of about one L2, as torch.nn's
// cells take it), except the GRU cell's, which runs its layer's one step. RNN cell, measured side by
// side (this AMD EPYC, 512 KB of L2 a core), time of 20 chained steps over torch's
// (torch._VF.rnn_tanh_cell), I = H, team on W as stored / team packing each member's rows of W (what
// the cell took from 16 rows before) / two products: 2 threads B = 8 H = 128 0.49 / 0.77 / 0.52,
// B = 16 H = 100 0.44 / 0.62 / 0.48, B = 20 H = 200 0.73 / 0.76 / 0.95, B = 16-128 H = 300 0.52-0.78 /
// 0.83-0.91 / 0.61-0.90, B = 64 H = 256 0.71 / 0.75 / 0.75, B = 4 H = 200 0.71 / 1.02 / 0.78; one
// thread (the team is one thread) B = 20 H = 200 0.85 / 0.93 / 0.65, B = 64 H = 256 0.79 / 0.88 /
// 0.74, B = 100 H = 50 0.62 / 0.62 / 0.49, B = 128 H = 128 0.75 / 0.72 / 0.64 (B = 16 H = 100-300:
// 0.44-0.58 / 0.73-1.08 / 0.50-0.76). The packed team also allocated its copy of W (160-640 KB) on
// every call, where glibc may map fresh pages each time: 20 steps of B = 20 H = 200 at one thread
// took 2.8 or 5.8 ms from one process to the next.

// -> {h' (B,H), c' (B,H)}, with cache also the activated gates (B,4H) [i f g o]
std::vector<at::Tensor> lstm_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& c0,
                                          const at::Tensor& w_ih, const at::Tensor& w_hh,
                                          const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                                          int64_t path, bool cache) {
  const Checks c("lstm_cell_forward", "x", x);
  check_cell(c, x, w_ih, 4, "(4H, I)", b_ih, b_hh);
  // one row (auto or hand-written) or rows (auto, or BLAS: two GEMM calls): the step's own kernels;
  // else through the layer (the packed product of path 1 with rows, an empty batch; it also
  // refuses any other path)
  const int64_t B = x.size(0);
  if ((B == 1 && (path == 0 || path == 1)) || (B > 1 && (path == 0 || path == 2)))
    return lstm_one_step(x, h, c0, w_ih, w_hh, b_ih, b_hh, cache, path == 2);
  const c10::optional<at::Tensor> bias = b_ih ? c10::optional<at::Tensor>(*b_ih + *b_hh) : c10::nullopt;
  const auto out = lstm_layer_forward(x.unsqueeze(0), h, c0, w_ih, w_hh, bias, c10::nullopt, c10::nullopt, path,
                                      cache, int64_t(1) << 20, c10::nullopt);
  if (!cache) return {out[2][0], out[1][0]};
  return {out[2][0], out[1][0], out[0][0]};
}

// -> {h' (B,H)}, with cache also the activated gates (B,3H) [r z n] and W_hn h + b_hn (B,H)
std::vector<at::Tensor> gru_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
                                         const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                                         const c10::optional<at::Tensor>& b_hh, bool cache) {
  const Checks c("gru_cell_forward", "x", x);
  check_cell(c, x, w_ih, 3, "(3H, I)", b_ih, b_hh);
  const int64_t B = x.size(0);
  if (B == 1 || rows_step_by_team(x, w_ih.size(0) / 3, 3)) return gru_one_step(x, h, w_ih, w_hh, b_ih, b_hh, cache);
  const auto out = gru_forward(project(x, w_ih, b_ih), h, w_hh, b_hh, c10::nullopt, cache);
  if (!cache) return {out[2][0]};
  return {out[2][0], out[0][0], out[1][0]};
}

// -> h' (B,H) (the backward reads h' itself)
at::Tensor rnn_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                            const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                            const std::string& nonlinearity) {
  const Checks c("rnn_cell_forward", "x", x);
  check_cell(c, x, w_ih, 1, "(H, I)", b_ih, b_hh);
  const int64_t B = x.size(0), H = w_ih.size(0);
  const RnnRows path = B == 1 ? RnnRows::kOneRow : rows_step_by_team(x, H, 1) ? RnnRows::kTeam : RnnRows::kGemmCalls;
  return rnn_one_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity, path);
}

// ---- backward: dz of the one step from the recurrence's backward, then the products
//   dx = dz W_ih,  dW_ih = dz^T x,  dW_hh = dz^T h,  db = sum over rows of dz
// `need` has bit k set where input k (in the order the function lists) wants its gradient; the
// others come back undefined (None). dh, dc: the gradients at the step's outputs.

// x (B,I), w_ih (G,I) and the (B,H) tensors of a backward (the gradients at the outputs, the
// state, what the forward kept), checked; the recurrence's backward checks the rest.
static void check_cell_backward(const Checks& c, const at::Tensor& x, const at::Tensor& w_ih, int64_t gates,
                                const char* sym, std::initializer_list<std::pair<const at::Tensor*, const char*>> bh) {
  c.rank("x", x, 2, "(B, I)");
  c.rank("w_ih", w_ih, 2, sym);
  c.hidden("w_ih", "first dimension", w_ih.size(0), gates, sym);
  const int64_t B = x.size(0), H = w_ih.size(0) / gates;
  c.tensor("x", x, "(B, I)", {B, w_ih.size(1)});
  c.tensor("w_ih", w_ih, sym, {w_ih.size(0), w_ih.size(1)});
  for (const auto& [t, name] : bh) {
    c.dense(name, *t);
    TORCH_CHECK(same_sizes(t->sizes(), {B, H}), c.fn, ": ", name, " should have shape (B, H) = ",
                shape_str(std::vector<int64_t>{B, H}), ", got ", shape_str(t->sizes()));
  }
}

static at::Tensor wanted(int64_t need, int bit, const std::function<at::Tensor()>& make) {
  return (need >> bit) & 1 ? make() : at::Tensor();
}

// inputs (x, h, c, w_ih, w_hh, bias) -> {dx, dh, dc, dW_ih, dW_hh, db}
std::vector<at::Tensor> lstm_cell_backward(const at::Tensor& dh, const at::Tensor& dc, const at::Tensor& x,
                                           const at::Tensor& h, const at::Tensor& c0, const at::Tensor& w_ih,
                                           const at::Tensor& w_hh, const at::Tensor& gates, const at::Tensor& c_new,
                                           int64_t need, int64_t path) {
  const Checks c("lstm_cell_backward", "x", x);
  check_cell_backward(c, x, w_ih, 4, "(4H, I)",
                      {{&dh, "dh"}, {&dc, "dc"}, {&h, "h"}, {&c0, "c"}, {&c_new, "c_new"}});
  const auto r = lstm_backward(dh.contiguous().unsqueeze(0), dc.contiguous(), gates.unsqueeze(0), c_new.unsqueeze(0),
                               h, c0, w_hh, c10::nullopt, c10::nullopt, path, false);
  const at::Tensor dz = r[0][0];                                               // (B,4H)
  return {wanted(need, 0, [&] { return gemm_new(dz, w_ih); }), wanted(need, 1, [&] { return r[1]; }),
          wanted(need, 2, [&] { return r[2]; }), wanted(need, 3, [&] { return gemm_new(dz.t(), x); }),
          wanted(need, 4, [&] { return gemm_new(dz.t(), h); }), wanted(need, 5, [&] { return dz.sum(0); })};
}

// inputs (x, h, w_ih, w_hh, b_ih, b_hh) -> {dx, dh, dW_ih, dW_hh, db_ih, db_hh}
std::vector<at::Tensor> gru_cell_backward(const at::Tensor& dh, const at::Tensor& x, const at::Tensor& h,
                                          const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& gates,
                                          const at::Tensor& ghn, const at::Tensor& h_new, int64_t need) {
  const Checks c("gru_cell_backward", "x", x);
  check_cell_backward(c, x, w_ih, 3, "(3H, I)", {{&dh, "dh"}, {&h, "h"}, {&ghn, "ghn"}, {&h_new, "h_new"}});
  const auto r = gru_backward(dh.contiguous().unsqueeze(0), gates.unsqueeze(0), ghn.unsqueeze(0), h_new.unsqueeze(0),
                              h, w_hh, c10::nullopt);
  const at::Tensor dzx = r[0][0], dgh = r[1][0];                                // (B,3H) each
  return {wanted(need, 0, [&] { return gemm_new(dzx, w_ih); }), wanted(need, 1, [&] { return r[2]; }),
          wanted(need, 2, [&] { return gemm_new(dzx.t(), x); }), wanted(need, 3, [&] { return gemm_new(dgh.t(), h); }),
          wanted(need, 4, [&] { return dzx.sum(0); }), wanted(need, 5, [&] { return dgh.sum(0); })};
}

}  // namespace lstmkit
