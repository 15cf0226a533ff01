// cell_cpu.cpp: one step of LSTMCell, GRUCell or RNNCell where no gradient is recorded, in one call.
//
// What it is: the cells' inference path. x (B,I) and the state (B,H) run through the same compiled
// recurrences as a one-step sequence (lstm_layer_forward, gru_forward, rnn_forward: their checks,
// their products and their cell math), with the input projection and the bias sums done here, so a
// cell called step by step from Python pays one call instead of a layer's operator machinery.
// What it is not: autograd or a new recurrence; the Python entry (lstmkit/modules/cells.py) takes
// this path only where nothing needs a gradient and nothing observes the operators.
// Dimensions: B batch, I input, H hidden.
#include <torch/extension.h>

#include "checks.h"

namespace lstmkit {

std::vector<at::Tensor> lstm_layer_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                           const at::Tensor& w_ih, const at::Tensor& w_hh,
                                           const c10::optional<at::Tensor>& bias,
                                           const c10::optional<at::Tensor>& w_hr,
                                           const c10::optional<at::Tensor>& lengths, int64_t path, bool cache,
                                           int64_t chunk_elems, const c10::optional<at::Tensor>& gates_out);
std::vector<at::Tensor> gru_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& w_hh,
                                    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& lengths,
                                    bool cache);
at::Tensor rnn_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& w_hh,
                       const std::string& nonlinearity, const c10::optional<at::Tensor>& lengths);

// x (B,I) and w_ih (G,I) with G = gates * H, and the biases (G,) both or neither, checked (the
// state and w_hh are checked by the recurrence called next).
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

// zx (1,B,G) = x W_ih^T (+ bias): the input projection of the one step.
static at::Tensor project(const at::Tensor& x, const at::Tensor& w_ih, const c10::optional<at::Tensor>& bias) {
  const at::Tensor zx = bias ? at::addmm(*bias, x, w_ih.t()) : at::mm(x, w_ih.t());
  return zx.unsqueeze(0);
}

// -> {h' (B,H), c' (B,H)}
std::vector<at::Tensor> lstm_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& c0,
                                          const at::Tensor& w_ih, const at::Tensor& w_hh,
                                          const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                                          int64_t path) {
  const Checks c("lstm_cell_forward", "x", x);
  check_cell(c, x, w_ih, 4, "(4H, I)", b_ih, b_hh);
  const c10::optional<at::Tensor> bias = b_ih ? c10::optional<at::Tensor>(*b_ih + *b_hh) : c10::nullopt;
  const auto out = lstm_layer_forward(x.unsqueeze(0), h, c0, w_ih, w_hh, bias, c10::nullopt, c10::nullopt, path,
                                      false, int64_t(1) << 20, c10::nullopt);
  return {out[2][0], out[1][0]};
}

// -> h' (B,H)
at::Tensor gru_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                            const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh) {
  const Checks c("gru_cell_forward", "x", x);
  check_cell(c, x, w_ih, 3, "(3H, I)", b_ih, b_hh);
  return gru_forward(project(x, w_ih, b_ih), h, w_hh, b_hh, c10::nullopt, false)[2][0];
}

// -> h' (B,H)
at::Tensor rnn_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                            const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                            const std::string& nonlinearity) {
  const Checks c("rnn_cell_forward", "x", x);
  check_cell(c, x, w_ih, 1, "(H, I)", b_ih, b_hh);
  const c10::optional<at::Tensor> bias = b_ih ? c10::optional<at::Tensor>(*b_ih + *b_hh) : c10::nullopt;
  return rnn_forward(project(x, w_ih, bias), h, w_hh, nonlinearity, c10::nullopt)[0];
}

}  // namespace lstmkit
