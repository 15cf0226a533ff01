// cell_autograd.cpp: the autograd nodes of LSTMCell, GRUCell and RNNCell steps, in C++.
//
// What it is: what a cell called step by step from Python runs where a gradient is wanted
// (lstmkit/modules/cells.py, _step_compiled): one node per step whose forward is the compiled
// step (cell_cpu.cpp) and whose backward is one compiled call returning every wanted gradient. A
// Python autograd Function cost about as much bookkeeping per step as the step itself at small
// sizes (LSTMCell, B = 1, H = 128).
// Where the gradient is itself differentiated (create_graph: grad mode is on in the backward), the
// LSTM and GRU nodes recompute the step from the saved inputs in differentiable ATen operations
// and differentiate that (second derivatives exact, as torch.nn's cells' are); the RNN node's
// backward is written in differentiable ATen operations throughout.
// What it is not: the cells' inference step (no node: cell_cpu.cpp's entries directly).
// Dimensions: B batch, I input, H hidden.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "entries.h"
#include "gemm.h"

namespace lstmkit {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

static at::Tensor or_undefined(const c10::optional<at::Tensor>& t) { return t ? *t : at::Tensor(); }

// What a create_graph backward recomputes the step from: a view of each saved input that requires
// a gradient (itself otherwise). The gradients are taken with respect to these views, so autograd
// stops at them: taken with respect to the saved tensors themselves, it would also follow their
// history, and a weight or an input used by earlier steps of the same loop would get those steps'
// contributions a second time (the outer backward adds them too). Through the views, the
// gradients still depend on the saved tensors, so a third derivative reaches them.
static variable_list aliases(const variable_list& inputs) {
  variable_list out;
  for (const at::Tensor& t : inputs) out.push_back(t.defined() && t.requires_grad() ? t.view_as(t) : t);
  return out;
}

// The gradients of outs (with incoming grads) with respect to the inputs (aliases) whose need is
// set, as a graph (create_graph); undefined for the others and for undefined inputs.
static variable_list graph_grads(const variable_list& outs, const variable_list& grads, const variable_list& inputs,
                                 const std::vector<bool>& need) {
  variable_list wrt;
  for (size_t k = 0; k < inputs.size(); ++k)
    if (need[k] && inputs[k].defined()) wrt.push_back(inputs[k]);
  const variable_list found = wrt.empty() ? variable_list{}
                                          : torch::autograd::grad(outs, wrt, grads, /*retain_graph=*/true,
                                                                  /*create_graph=*/true, /*allow_unused=*/true);
  variable_list result(inputs.size());
  for (size_t k = 0, j = 0; k < inputs.size(); ++k)
    if (need[k] && inputs[k].defined()) result[k] = found[j++];
  return result;
}

// Which inputs want a gradient: the node's edges are its tensor inputs in order, the biases only
// where given (so with biases absent there are no edges for them).
static std::vector<bool> wanted(AutogradContext* ctx, size_t tensors, bool bias) {
  std::vector<bool> need(tensors + 2, false);
  for (size_t k = 0; k < tensors; ++k) need[k] = ctx->needs_input_grad(k);
  if (bias) need[tensors] = ctx->needs_input_grad(tensors), need[tensors + 1] = ctx->needs_input_grad(tensors + 1);
  return need;
}

static int64_t bit_mask(const std::vector<bool>& need) {
  int64_t bits = 0;
  for (size_t k = 0; k < need.size(); ++k) bits |= need[k] ? int64_t(1) << k : 0;
  return bits;
}

// ---- LSTMCell: (x, h, c, w_ih, w_hh, b_ih, b_hh) -> (h', c') ------------------------------------
struct LSTMCellStep : public torch::autograd::Function<LSTMCellStep> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& h, const at::Tensor& c,
                               const at::Tensor& w_ih, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                               const c10::optional<at::Tensor>& b_hh, int64_t path) {
    const auto out = lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, path, true);     // h', c', gates
    ctx->save_for_backward({x, h, c, w_ih, w_hh, or_undefined(b_ih), or_undefined(b_hh), out[2], out[1]});
    ctx->saved_data["path"] = path;
    return {out[0], out[1]};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &x = s[0], &h = s[1], &c = s[2], &w_ih = s[3], &w_hh = s[4], &b_ih = s[5], &b_hh = s[6];
    const std::vector<bool> need = wanted(ctx, 5, b_ih.defined());
    variable_list result;
    if (at::GradMode::is_enabled()) {                     // create_graph: z = x W_ih^T + h W_hh^T + b, as torch.nn
      const variable_list a = aliases({x, h, c, w_ih, w_hh, b_ih, b_hh});
      at::Tensor z = at::mm(a[0], a[3].t()) + at::mm(a[1], a[4].t());
      if (b_ih.defined()) z = z + a[5] + a[6];
      const auto q = z.chunk(4, 1);                                             // [i f g o]
      const at::Tensor i = q[0].sigmoid(), f = q[1].sigmoid(), g = q[2].tanh(), o = q[3].sigmoid();
      const at::Tensor c_new = f * a[2] + i * g;
      result = graph_grads({o * c_new.tanh(), c_new}, {grads[0], grads[1]}, a, need);
    } else {
      std::vector<bool> bits(need.begin(), need.begin() + 5);
      bits.push_back(need[5] || need[6]);                                        // one db for both biases
      const auto r = lstm_cell_backward(grads[0], grads[1], x, h, c, w_ih, w_hh, s[7], s[8], bit_mask(bits),
                                        ctx->saved_data["path"].toInt());
      result = {r[0], r[1], r[2], r[3], r[4], need[5] ? r[5] : at::Tensor(),
                need[6] ? (need[5] ? r[5].clone() : r[5]) : at::Tensor()};
    }
    result.push_back(at::Tensor());                                             // path
    return result;
  }
};

// ---- GRUCell: (x, h, w_ih, w_hh, b_ih, b_hh) -> h' ------------------------------------------------
struct GRUCellStep : public torch::autograd::Function<GRUCellStep> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
                            const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                            const c10::optional<at::Tensor>& b_hh) {
    const auto out = gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, true);              // h', gates, ghn
    ctx->save_for_backward({x, h, w_ih, w_hh, or_undefined(b_ih), or_undefined(b_hh), out[1], out[2], out[0]});
    return out[0];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &x = s[0], &h = s[1], &w_ih = s[2], &w_hh = s[3], &b_ih = s[4], &b_hh = s[5];
    const std::vector<bool> need = wanted(ctx, 4, b_ih.defined());
    if (at::GradMode::is_enabled()) {                     // create_graph: torch.nn's GRU cell in ATen operations
      const variable_list a = aliases({x, h, w_ih, w_hh, b_ih, b_hh});
      at::Tensor gx = at::mm(a[0], a[2].t()), gh = at::mm(a[1], a[3].t());
      if (b_ih.defined()) gx = gx + a[4], gh = gh + a[5];
      const auto xs = gx.chunk(3, 1), hs = gh.chunk(3, 1);                     // [r z n]
      const at::Tensor r = (xs[0] + hs[0]).sigmoid(), z = (xs[1] + hs[1]).sigmoid();
      const at::Tensor n = (xs[2] + r * hs[2]).tanh();
      return graph_grads({(1 - z) * n + z * a[1]}, {grads[0]}, a, need);
    }
    return gru_cell_backward(grads[0], x, h, w_ih, w_hh, s[6], s[7], s[8], bit_mask(need));
  }
};

// ---- RNNCell: (x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity) -> h' ---------------------------------
// The backward is written with differentiable ATen operations on the saved inputs and output (as
// torch's own tanh backward reads its result), so a gradient taken with create_graph is exact;
// without create_graph, dz is one loop instead of three operators.
struct RNNCellStep : public torch::autograd::Function<RNNCellStep> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& h,
                            const at::Tensor& w_ih, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                            const c10::optional<at::Tensor>& b_hh, const std::string& nonlinearity) {
    at::Tensor h_new = rnn_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity);
    ctx->save_for_backward({x, h, w_ih, w_hh, h_new});
    ctx->saved_data["relu"] = nonlinearity == "relu";
    ctx->saved_data["bias"] = b_ih.has_value();
    return h_new;
  }

  // dz = dh act'(h'): tanh' = 1 - h'^2, relu' = [h' > 0]; then the products of the module comment.
  static variable_list backward(AutogradContext* ctx,
                                                 variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &h = saved[1], &w_ih = saved[2], &w_hh = saved[3], &h_new = saved[4];
    const at::Tensor& dh = grads[0];
    const bool relu = ctx->saved_data["relu"].toBool();
    at::Tensor dz;
    if (at::GradMode::is_enabled() || dh.scalar_type() != h_new.scalar_type() || dh.sizes() != h_new.sizes() ||
        !h_new.is_contiguous()) {                                   // create_graph (or an odd dh): ATen's operations
      dz = relu ? dh * h_new.gt(0).to(dh.scalar_type()) : dh * (1 - h_new * h_new);
    } else {                                                        // one loop (three operators cost ~5 us a step)
      const at::Tensor dhc = dh.contiguous();                       // (an expanded dh, as from sum(): one copy)
      dz = at::empty_like(h_new);
      AT_DISPATCH_FLOATING_TYPES(h_new.scalar_type(), "rnn_cell_dz", [&] {
        const scalar_t *g = dhc.data_ptr<scalar_t>(), *y = h_new.data_ptr<scalar_t>();
        scalar_t* d = dz.data_ptr<scalar_t>();
        for (int64_t i = 0, n = h_new.numel(); i < n; ++i)
          d[i] = relu ? (y[i] > scalar_t(0) ? g[i] : scalar_t(0)) : g[i] * (scalar_t(1) - y[i] * y[i]);
      });
    }
    auto need = [&](size_t k) { return ctx->needs_input_grad(k); };                 // (no bias: no edges 4, 5)
    // a b: differentiable where the gradient is itself differentiated, else gemm.h's choice (one
    // row by hand, large float32 products by oneDNN, as the LSTM and GRU cells' backward)
    const bool graph = at::GradMode::is_enabled();
    auto product = [&](const at::Tensor& a, const at::Tensor& b) { return graph ? a.mm(b) : gemm_new(a, b); };
    const bool bias = ctx->saved_data["bias"].toBool(), bi = bias && need(4), bh = bias && need(5);
    const at::Tensor db = bi || bh ? dz.sum(0) : at::Tensor();
    return {need(0) ? product(dz, w_ih) : at::Tensor(), need(1) ? product(dz, w_hh) : at::Tensor(),
            need(2) ? product(dz.t(), x) : at::Tensor(), need(3) ? product(dz.t(), h) : at::Tensor(),
            bi ? db : at::Tensor(), bh ? (bi ? db.clone() : db) : at::Tensor(), at::Tensor()};
  }
};

// One RNNCell step that autograd can differentiate (training): h' (B,H) with its backward node.
at::Tensor rnn_cell_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                         const std::string& nonlinearity) {
  return RNNCellStep::apply(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity);
}

// One LSTMCell step that autograd can differentiate (training): (h', c') with its backward node.
std::vector<at::Tensor> lstm_cell_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& c,
                                       const at::Tensor& w_ih, const at::Tensor& w_hh,
                                       const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                                       int64_t path) {
  return LSTMCellStep::apply(x, h, c, w_ih, w_hh, b_ih, b_hh, path);
}

// One GRUCell step that autograd can differentiate (training): h' with its backward node.
at::Tensor gru_cell_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh) {
  return GRUCellStep::apply(x, h, w_ih, w_hh, b_ih, b_hh);
}

}  // namespace lstmkit
