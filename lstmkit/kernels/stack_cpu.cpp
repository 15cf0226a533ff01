// stack_cpu.cpp: a recurrent module's inference in one call: every layer and direction of an LSTM,
// GRU or RNN, without lengths and with nothing recorded, and the final states stacked; and one step
// of every layer where autograd records (stack_one_step, below).
//
// What it is: the loop over layers of lstmkit/modules/compiled_inference.py in C++, over the very
// calls the general path makes for a layer in inference (lstmkit/functional/*_op.py's _inference:
// the cell's one call for one step; else the layer's input projection and recurrence; an LSTM's two
// directions at once), in the same order on the same tensors: the same results bit for bit (tested).
// Why: a short call's Python around its kernels (per layer the wrapper, contiguity, the bias sum;
// the zero states, the stacking) cost about as much as the kernels themselves (T = 50, B = 1, H = 50:
// ~100 us of Python around a ~100 us kernel, onnxruntime's whole call ~100 us).
// What it is not: the module's argument checks (the caller hands what it checked: parameters of
// one dtype, states of the exact shapes; every kernel called checks its own tensors again), nor a
// new recurrence.
// Dimensions: T time, B batch, I input, H hidden, P projection (H without one), L layers, D directions.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "checks.h"
#include "entries.h"

namespace lstmkit {

using MaybeTensor = c10::optional<at::Tensor>;

// One direction's result: y (T,B,P), the final h (B,P) and, for an LSTM, c (B,H).
struct DirectionOut {
  at::Tensor y, h, c;
};

static MaybeTensor dense(const MaybeTensor& t) { return t ? MaybeTensor(t->contiguous()) : c10::nullopt; }

// b_ih + b_hh, or none (functional/lstm_op.py's _bias)
static MaybeTensor summed(const MaybeTensor& b_ih, const MaybeTensor& b_hh) {
  return b_ih ? MaybeTensor(*b_ih + *b_hh) : c10::nullopt;
}

// zx (T,B,G) = x W_ih^T (+ bias): functional/backend.py's _project_steps (kernels.project), through
// gemm.cpp's checked entry (the products by hand trust their shapes)
static at::Tensor project_steps(const at::Tensor& x, const at::Tensor& w_ih, const MaybeTensor& bias) {
  const int64_t T_ = x.size(0), B = x.size(1);
  TORCH_CHECK(w_ih.dim() == 2, "stack_inference: w_ih should have shape (G, I), got ", shape_str(w_ih.sizes()));
  return gemm(x.reshape({T_ * B, x.size(2)}), w_ih.t(), bias).view({T_, B, w_ih.size(0)});
}

// w: (w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction. As lstm_op._inference.
static DirectionOut lstm_direction(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                   const MaybeTensor* w, int64_t path, int64_t chunk) {
  const at::Tensor w_ih = w[0]->contiguous(), w_hh = w[1]->contiguous();
  if (x.size(0) == 1 && !w[4]) {                                                // one step: the cell's call
    const auto hc = lstm_cell_forward(x[0].contiguous(), h0.contiguous(), c0.contiguous(), w_ih, w_hh, dense(w[2]),
                                      dense(w[3]), path, false);
    return {hc[0].unsqueeze(0), hc[0], hc[1]};
  }
  const auto r = lstm_layer_forward(x.contiguous(), h0.contiguous(), c0.contiguous(), w_ih, w_hh,
                                    dense(summed(w[2], w[3])), dense(w[4]), c10::nullopt, path, false, chunk,
                                    c10::nullopt);
  return {r[2], r[2][-1], r[1][0]};
}

// As gru_op._inference.
static DirectionOut gru_direction(const at::Tensor& x, const at::Tensor& h0, const MaybeTensor* w) {
  const at::Tensor w_ih = w[0]->contiguous(), w_hh = w[1]->contiguous();
  if (x.size(0) == 1) {
    const at::Tensor h = gru_cell_forward(x[0].contiguous(), h0.contiguous(), w_ih, w_hh, dense(w[2]), dense(w[3]),
                                          false)[0];
    return {h.unsqueeze(0), h, at::Tensor()};
  }
  const at::Tensor hs = gru_forward(project_steps(x, w_ih, w[2]).contiguous(), h0.contiguous(), w_hh, dense(w[3]),
                                    c10::nullopt, false)[2];
  return {hs, hs[-1], at::Tensor()};
}

// As rnn_op._inference.
static DirectionOut rnn_direction(const at::Tensor& x, const at::Tensor& h0, const MaybeTensor* w,
                                  const std::string& nonlinearity) {
  const at::Tensor w_ih = w[0]->contiguous(), w_hh = w[1]->contiguous();
  if (x.size(0) == 1) {
    const at::Tensor h = rnn_cell_forward(x[0].contiguous(), h0.contiguous(), w_ih, w_hh, dense(w[2]), dense(w[3]),
                                          nonlinearity);
    return {h.unsqueeze(0), h, at::Tensor()};
  }
  const at::Tensor hs = rnn_forward(project_steps(x, w_ih, summed(w[2], w[3])).contiguous(), h0.contiguous(), w_hh,
                                    nonlinearity, c10::nullopt);
  return {hs, hs[-1], at::Tensor()};
}

// The arguments both entries share, checked: kind, directions, five weights (w_ih and w_hh given) for
// each of L layers and D directions, the state empty or its tensors (L*D, B, ·), x (T,B,I). -> L.
static int64_t check_stack(const Checks& c, const std::string& kind, const at::Tensor& input,
                           const std::vector<at::Tensor>& state, const std::vector<MaybeTensor>& weights,
                           int64_t directions) {
  const bool lstm = kind == "lstm";
  TORCH_CHECK(lstm || kind == "gru" || kind == "rnn", c.fn, ": kind should be 'lstm', 'gru' or 'rnn', got '", kind,
              "'");
  TORCH_CHECK(directions == 1 || directions == 2, c.fn, ": directions should be 1 or 2, got ", directions);
  const int64_t per_layer = 5 * directions, L = static_cast<int64_t>(weights.size()) / per_layer;
  TORCH_CHECK(L >= 1 && static_cast<int64_t>(weights.size()) == L * per_layer, c.fn,
              ": weights should be 5 tensors or None (w_ih, w_hh, b_ih, b_hh, w_hr) for each of L layers and ",
              directions, " direction(s), got ", weights.size());
  for (int64_t k = 0; k < L * directions; ++k)
    TORCH_CHECK(weights[5 * k] && weights[5 * k + 1], c.fn, ": layer ", k / directions, " direction ",
                k % directions, " has no w_ih or w_hh");
  const size_t parts = lstm ? 2 : 1;
  TORCH_CHECK(state.empty() || state.size() == parts, c.fn, ": state should be empty or ", parts,
              " tensor(s), got ", state.size());
  c.rank("x", input, 3, "(T, B, I)");
  for (const auto& s : state) c.rank("state", s, 3, "(L*D, B, ·)");
  for (const auto& s : state)
    TORCH_CHECK(s.size(0) == L * directions, c.fn, ": state should have L*D = ", L * directions,
                " in its first dimension, got ", s.size(0));
  return L;
}

// Zero states where none are given, (B,P) and for an LSTM (B,H), shared by every layer, as the
// general path's; empty where the state is given.
static std::vector<at::Tensor> zero_state(bool lstm, const at::Tensor& input, const std::vector<at::Tensor>& state,
                                          const std::vector<MaybeTensor>& weights) {
  std::vector<at::Tensor> zeros;
  if (!state.empty()) return zeros;
  const int64_t B = input.size(1), P = weights[1]->size(1);
  zeros.push_back(at::zeros({B, P}, input.options()));
  if (lstm) zeros.push_back(at::zeros({B, weights[1]->size(0) / 4}, input.options()));
  return zeros;
}

std::vector<at::Tensor> stack_inference(const std::string& kind, const at::Tensor& input,
                                        const std::vector<at::Tensor>& state, const std::vector<MaybeTensor>& weights,
                                        int64_t directions, const std::string& nonlinearity, int64_t path,
                                        int64_t chunk_elems) {
  const Checks c("stack_inference", "x", input);
  const int64_t L = check_stack(c, kind, input, state, weights, directions);
  const bool lstm = kind == "lstm";
  const std::vector<at::Tensor> zeros = zero_state(lstm, input, state, weights);
  auto h_at = [&](int64_t k) { return state.empty() ? zeros[0] : state[0][k]; };
  auto c_at = [&](int64_t k) { return state.empty() ? zeros[1] : state[1][k]; };
  auto one = [&](const at::Tensor& x, int64_t k) {
    const MaybeTensor* w = weights.data() + 5 * k;
    if (lstm) return lstm_direction(x, h_at(k), c_at(k), w, path, chunk_elems);
    return kind == "gru" ? gru_direction(x, h_at(k), w) : rnn_direction(x, h_at(k), w, nonlinearity);
  };

  at::Tensor x = input;
  std::vector<at::Tensor> h_n, c_n;
  for (int64_t layer = 0; layer < L; ++layer) {
    const int64_t k = layer * directions;
    if (directions == 1) {
      DirectionOut d = one(x, k);
      h_n.push_back(d.h);
      if (lstm) c_n.push_back(d.c);
      x = d.y;
      continue;
    }
    DirectionOut f, r;
    if (lstm) {                                                                 // both directions at once
      const MaybeTensor* w = weights.data() + 5 * k;
      const MaybeTensor* v = w + 5;
      const auto out = lstm_layer_forward_pair(
          x.contiguous(), x.flip(0).contiguous(), h_at(k).contiguous(), c_at(k).contiguous(),
          h_at(k + 1).contiguous(), c_at(k + 1).contiguous(), w[0]->contiguous(), w[1]->contiguous(),
          dense(summed(w[2], w[3])), dense(w[4]), v[0]->contiguous(), v[1]->contiguous(), dense(summed(v[2], v[3])),
          dense(v[4]), path, chunk_elems);
      f = {out[1], out[1][-1], out[0][0]};
      r = {out[3], out[3][-1], out[2][0]};
    } else {
      f = one(x, k);
      r = one(x.flip(0), k + 1);
    }
    h_n.insert(h_n.end(), {f.h, r.h});
    if (lstm) c_n.insert(c_n.end(), {f.c, r.c});
    x = at::cat({f.y, r.y.flip(0)}, 2);                                         // (T,B,2P)
  }
  std::vector<at::Tensor> out = {x, at::stack(h_n)};                           // stack copies: h_n is not y
  if (lstm) out.push_back(at::stack(c_n));
  return out;
}

// One step (T = 1) of every layer of a unidirectional module where autograd records (a generation
// or streaming loop in training): each layer is the cell's C++ autograd step (cell_autograd.cpp:
// *_cell_step), called as the general path's one-step layer calls it with a gradient
// (functional/*_op.py: lstm_layer, gru_layer, rnn_layer), its output copied as there (the node keeps
// h, and a caller may write into y); the final states stacked. The same values and gradients as
// the general path (tested). No projection (an LSTM with w_hr takes its layer kernel there).
std::vector<at::Tensor> stack_one_step(const std::string& kind, const at::Tensor& input,
                                       const std::vector<at::Tensor>& state, const std::vector<MaybeTensor>& weights,
                                       const std::string& nonlinearity, int64_t path) {
  const Checks c("stack_one_step", "x", input);
  const int64_t L = check_stack(c, kind, input, state, weights, 1);
  TORCH_CHECK(input.size(0) == 1, c.fn, ": x should hold one step (T = 1), got T = ", input.size(0));
  const bool lstm = kind == "lstm";
  const std::vector<at::Tensor> zeros = zero_state(lstm, input, state, weights);
  at::Tensor x = input;
  std::vector<at::Tensor> h_n, c_n;
  for (int64_t k = 0; k < L; ++k) {
    const MaybeTensor* w = weights.data() + 5 * k;
    TORCH_CHECK(!w[4], c.fn, ": layer ", k, " has a projection (w_hr): one step of it is the layer kernel's");
    const at::Tensor x0 = x[0].contiguous(), h0 = (state.empty() ? zeros[0] : state[0][k]).contiguous();
    const at::Tensor w_ih = w[0]->contiguous(), w_hh = w[1]->contiguous();
    at::Tensor h;
    if (lstm) {
      const at::Tensor c0 = (state.empty() ? zeros[1] : state[1][k]).contiguous();
      const auto hc = lstm_cell_step(x0, h0, c0, w_ih, w_hh, dense(w[2]), dense(w[3]), path);
      h = hc[0];
      c_n.push_back(hc[1]);
    } else if (kind == "gru") {
      h = gru_cell_step(x0, h0, w_ih, w_hh, dense(w[2]), dense(w[3]));
    } else {
      h = rnn_cell_step(x0, h0, w_ih, w_hh, dense(w[2]), dense(w[3]), nonlinearity);
    }
    h_n.push_back(h);
    x = h.unsqueeze(0).clone();                                                 // (1,B,P)
  }
  std::vector<at::Tensor> out = {x, at::stack(h_n)};
  if (lstm) out.push_back(at::stack(c_n));
  return out;
}

}  // namespace lstmkit
