// bindings.cpp: the Python names of the compiled CPU recurrences (lstmkit/kernels/__init__.py loads them).
// What it is: one pybind11 module over the entry points of entries.h; the code lives in one file per cell.
#include <torch/extension.h>

#include <utility>

#include "entries.h"

namespace {

// f() with the ATen operations of an inference call (the views, allocations, bias sums and stacking
// around its kernels, ~40 in a short module call) dispatched below the autograd and view-tracking
// layers, where on: nothing of such a call is recorded (its kernels write into tensors it
// allocated, and its outputs are those tensors or views of them that nothing else holds), and each
// operation costs ~0.3 us less there. Measured (2026-12-02, one thread, the module's whole inference
// call): T = 2, B = 1, H = 8 69 -> 50 us; T = 50, B = 1, H = 50 143 -> 124 us (the kernel's own call
// 26 -> 17 and 96 -> 85 us). A call that keeps a cache for backward (its caller's autograd.Function)
// runs as before; the cells' autograd steps are below these layers already (torch's C++ Function).
template <typename F>
auto below_autograd(bool on, F&& f) {
  c10::optional<at::AutoDispatchBelowADInplaceOrView> guard;
  if (on) guard.emplace();
  return std::forward<F>(f)();
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lstmkit CPU recurrences (LSTM path: 0 auto, 1 hand-written product, 2 BLAS per step)";
  m.def("lstm_forward", &lstmkit::lstm_forward,
        "(zx, h0, c0, w_hh, w_hr, lengths, path, cache) -> [gates, cs, hs] (cache false: [None, c_last (1,B,H), hs])");
  m.def("lstm_backward", &lstmkit::lstm_backward,
        "(dhs, dc_last, gates, cs, h0, c0, w_hh, w_hr, lengths, path, overwrite) -> [dz, dh0, dc0, dhtot or None]"
        " (overwrite: dz is written over gates)");
  m.def("lstm_layer_forward",
        [](const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
           const at::Tensor& w_hh, const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& w_hr,
           const c10::optional<at::Tensor>& lengths, int64_t path, bool cache, int64_t chunk_elems,
           const c10::optional<at::Tensor>& gates_out) {
          return below_autograd(!cache, [&] {
            return lstmkit::lstm_layer_forward(x, h0, c0, w_ih, w_hh, bias, w_hr, lengths, path, cache, chunk_elems,
                                               gates_out);
          });
        },
        "(x, h0, c0, w_ih, w_hh, bias, w_hr, lengths, path, cache, chunk_elems, gates_out) -> as lstm_forward, with"
        " zx = x W_ih^T computed inside (in chunks without the cache) and bias added in the cell");
  m.def("lstm_layer_forward_pair",
        [](const at::Tensor& x, const at::Tensor& x_rev, const at::Tensor& h0, const at::Tensor& c0,
           const at::Tensor& h0_rev, const at::Tensor& c0_rev, const at::Tensor& w_ih, const at::Tensor& w_hh,
           const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& w_hr, const at::Tensor& w_ih_rev,
           const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& bias_rev,
           const c10::optional<at::Tensor>& w_hr_rev, int64_t path, int64_t chunk_elems) {
          return below_autograd(true, [&] {
            return lstmkit::lstm_layer_forward_pair(x, x_rev, h0, c0, h0_rev, c0_rev, w_ih, w_hh, bias, w_hr,
                                                    w_ih_rev, w_hh_rev, bias_rev, w_hr_rev, path, chunk_elems);
          });
        },
        "(x, x_rev, h0, c0, h0_rev, c0_rev, w_ih, w_hh, bias, w_hr, w_ih_rev, w_hh_rev, bias_rev, w_hr_rev, path,"
        " chunk_elems) -> [c_last, hs, c_last_rev, hs_rev]: both directions of a layer, inference, one thread each"
        " at two threads");
  m.def("gru_forward",
        [](const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
           const c10::optional<at::Tensor>& lengths, bool cache) {
          return below_autograd(!cache, [&] { return lstmkit::gru_forward(zx, h0, w_hh, b_hh, lengths, cache); });
        },
        "(zx, h0, w_hh, b_hh, lengths, cache) -> [gates, ghn, hs] (cache false: [None, None, hs])");
  m.def("gru_backward", &lstmkit::gru_backward, "(dhs, gates, ghn, hs, h0, w_hh, lengths) -> [dzx, dgh, dh0]");
  m.def("rnn_forward", &lstmkit::rnn_forward, "(zx, h0, w_hh, nonlinearity, lengths) -> hs");
  m.def("lstm_cell_forward",
        [](const at::Tensor& x, const at::Tensor& h, const at::Tensor& c, const at::Tensor& w_ih,
           const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
           int64_t path, bool cache) {
          return below_autograd(!cache,
                                [&] { return lstmkit::lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, path, cache); });
        },
        "(x, h, c, w_ih, w_hh, b_ih, b_hh, path, cache) -> [h', c'] (cache: [h', c', gates])");
  m.def("gru_cell_forward",
        [](const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
           const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh, bool cache) {
          return below_autograd(!cache,
                                [&] { return lstmkit::gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, cache); });
        },
        "(x, h, w_ih, w_hh, b_ih, b_hh, cache) -> [h'] (cache: [h', gates, ghn])");
  m.def("rnn_cell_forward",
        [](const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
           const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
           const std::string& nonlinearity) {
          return below_autograd(true,
                                [&] { return lstmkit::rnn_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity); });
        },
        "(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity) -> h' (inference: the cell's autograd step is rnn_cell_step)");
  m.def("lstm_cell_step", &lstmkit::lstm_cell_step,
        "(x, h, c, w_ih, w_hh, b_ih, b_hh, path) -> [h', c'] with their autograd node (the backward in C++)");
  m.def("gru_cell_step", &lstmkit::gru_cell_step,
        "(x, h, w_ih, w_hh, b_ih, b_hh) -> h' with its autograd node (the backward in C++)");
  m.def("rnn_cell_step", &lstmkit::rnn_cell_step,
        "(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity) -> h' with its autograd node (the backward in C++)");
  m.def("lstm_cell_backward", &lstmkit::lstm_cell_backward,
        "(dh, dc, x, h, c, w_ih, w_hh, gates, c_new, need, path) -> [dx, dh, dc, dw_ih, dw_hh, db]");
  m.def("gru_cell_backward", &lstmkit::gru_cell_backward,
        "(dh, x, h, w_ih, w_hh, gates, ghn, h_new, need) -> [dx, dh, dw_ih, dw_hh, db_ih, db_hh]");
  m.def("gemm", &lstmkit::gemm, "(a, b, init=None) -> (init +) a b by gemm.h's choice (by hand, oneDNN or ATen)",
        py::arg("a"), py::arg("b"), py::arg("init") = py::none());
  m.def("gemm_backend", &lstmkit::gemm_backend, "(dtype, M, K, N) -> 'onednn' or 'aten': gemm's library now");
  m.def("gemm_path", &lstmkit::gemm_path, "(a, b) -> 'few rows', 'W as stored', 'onednn' or 'aten': gemm's way now");
  m.def("vector_bytes", &lstmkit::vector_bytes, "() -> bytes of the vector registers the kernel was built for");
  m.def("cache_size", &lstmkit::cache_size, "(level 2 or 3) -> bytes of one core's L2 or the shared L3, as the kernels read them");
  m.def("cores_busy", &lstmkit::cores_busy_now,
        "() -> whether the kernels run their teams on one thread now (a thread came in late: another process has its core)");
  m.def("set_cores_busy", &lstmkit::set_cores_busy, "(busy) -> None: mark the cores busy for 100 ms, or clear the mark");
  m.def("get_tuning", &lstmkit::get_tuning, "(threads) -> {limit: value}: tuning.h's limits for that thread count");
  m.def("set_tuning", &lstmkit::set_tuning, "(threads, limit, value): set one of tuning.h's limits");
  m.def("default_tuning", &lstmkit::default_tuning, "() -> {limit: value}: the built-in defaults");
  m.def("stack_inference",
        [](const std::string& kind, const at::Tensor& x, const std::vector<at::Tensor>& state,
           const std::vector<c10::optional<at::Tensor>>& weights, int64_t directions, const std::string& nonlinearity,
           int64_t path, int64_t chunk_elems) {
          return below_autograd(true, [&] {
            return lstmkit::stack_inference(kind, x, state, weights, directions, nonlinearity, path, chunk_elems);
          });
        },
        "(kind, x, state, weights, directions, nonlinearity, path, chunk_elems) -> [y, h_n] (an LSTM: [y, h_n, c_n]):"
        " every layer of a module's inference (state: [] or [h0] or [h0, c0]; weights: (w_ih, w_hh, b_ih, b_hh, w_hr)"
        " per layer and direction, None where absent)");
  m.def("stack_one_step", &lstmkit::stack_one_step,
        "(kind, x, state, weights, nonlinearity, path) -> as stack_inference, one step (T = 1) of a unidirectional"
        " module with autograd: each layer the cell's C++ autograd step");
  m.def("dispatch_unwatched", &lstmkit::dispatch_unwatched,
        "() -> whether no tracer, torch-function or torch-dispatch mode or CPU autocast watches the dispatcher in"
        " this thread now");
  m.def("rnn_backward", &lstmkit::rnn_backward, "(dhs, hs, w_hh, nonlinearity, lengths) -> [dz, dh0]");
}
