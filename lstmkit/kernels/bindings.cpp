// bindings.cpp: the Python names of the compiled CPU recurrences (lstmkit/kernels/__init__.py loads them).
// What it is: declarations and one pybind11 module; the code lives in one file per cell.
#include <torch/extension.h>

namespace lstmkit {
std::vector<at::Tensor> lstm_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& c0,
                                     const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
                                     const c10::optional<at::Tensor>& lengths, int64_t path);
std::vector<at::Tensor> lstm_backward(const at::Tensor& dhs, const at::Tensor& dc_last, const at::Tensor& gates,
                                      const at::Tensor& cs, const at::Tensor& h0, const at::Tensor& c0,
                                      const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
                                      const c10::optional<at::Tensor>& lengths, int64_t path);
}  // namespace lstmkit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lstmkit CPU recurrences (path: 0 auto, 1 hand-written small-batch product, 2 BLAS per step)";
  m.def("lstm_forward", &lstmkit::lstm_forward, "(zx, h0, c0, w_hh, w_hr, lengths, path) -> [gates, cs, hs]");
  m.def("lstm_backward", &lstmkit::lstm_backward,
        "(dhs, dc_last, gates, cs, h0, c0, w_hh, w_hr, lengths, path) -> [dz, dh0, dc0, dhtot or None]");
}
