// bindings.cpp: the Python names of the compiled CPU recurrences (lstmkit/kernels/__init__.py loads them).
// What it is: declarations and one pybind11 module; the code lives in one file per cell.
#include <torch/extension.h>

namespace lstmkit {
std::vector<at::Tensor> lstm_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& c0,
                                     const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
                                     const c10::optional<at::Tensor>& lengths, int64_t path, bool cache);
std::vector<at::Tensor> lstm_backward(const at::Tensor& dhs, const at::Tensor& dc_last, const at::Tensor& gates,
                                      const at::Tensor& cs, const at::Tensor& h0, const at::Tensor& c0,
                                      const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
                                      const c10::optional<at::Tensor>& lengths, int64_t path, bool overwrite);
std::vector<at::Tensor> lstm_layer_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                           const at::Tensor& w_ih, const at::Tensor& w_hh,
                                           const c10::optional<at::Tensor>& bias,
                                           const c10::optional<at::Tensor>& w_hr,
                                           const c10::optional<at::Tensor>& lengths, int64_t path, bool cache,
                                           int64_t chunk_elems, const c10::optional<at::Tensor>& gates_out);
std::vector<at::Tensor> gru_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& w_hh,
                                    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& lengths,
                                    bool cache);
std::vector<at::Tensor> gru_backward(const at::Tensor& dhs, const at::Tensor& gates, const at::Tensor& ghn,
                                     const at::Tensor& hs, const at::Tensor& h0, const at::Tensor& w_hh,
                                     const c10::optional<at::Tensor>& lengths);
at::Tensor rnn_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& w_hh,
                       const std::string& nonlinearity, const c10::optional<at::Tensor>& lengths);
std::vector<at::Tensor> rnn_backward(const at::Tensor& dhs, const at::Tensor& hs, const at::Tensor& w_hh,
                                     const std::string& nonlinearity, const c10::optional<at::Tensor>& lengths);
std::vector<at::Tensor> lstm_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& c0,
                                          const at::Tensor& w_ih, const at::Tensor& w_hh,
                                          const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                                          int64_t path, bool cache);
std::vector<at::Tensor> gru_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
                                         const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                                         const c10::optional<at::Tensor>& b_hh, bool cache);
at::Tensor rnn_cell_forward(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                            const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                            const std::string& nonlinearity);
at::Tensor rnn_cell_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                         const std::string& nonlinearity);
std::vector<at::Tensor> lstm_cell_backward(const at::Tensor& dh, const at::Tensor& dc, const at::Tensor& x,
                                           const at::Tensor& h, const at::Tensor& c0, const at::Tensor& w_ih,
                                           const at::Tensor& w_hh, const at::Tensor& gates, const at::Tensor& c_new,
                                           int64_t need, int64_t path);
std::vector<at::Tensor> gru_cell_backward(const at::Tensor& dh, const at::Tensor& x, const at::Tensor& h,
                                          const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& gates,
                                          const at::Tensor& ghn, const at::Tensor& h_new, int64_t need);
}  // namespace lstmkit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lstmkit CPU recurrences (LSTM path: 0 auto, 1 hand-written product, 2 BLAS per step)";
  m.def("lstm_forward", &lstmkit::lstm_forward,
        "(zx, h0, c0, w_hh, w_hr, lengths, path, cache) -> [gates, cs, hs] (cache false: [None, c_last (1,B,H), hs])");
  m.def("lstm_backward", &lstmkit::lstm_backward,
        "(dhs, dc_last, gates, cs, h0, c0, w_hh, w_hr, lengths, path, overwrite) -> [dz, dh0, dc0, dhtot or None]"
        " (overwrite: dz is written over gates)");
  m.def("lstm_layer_forward", &lstmkit::lstm_layer_forward,
        "(x, h0, c0, w_ih, w_hh, bias, w_hr, lengths, path, cache, chunk_elems, gates_out) -> as lstm_forward, with"
        " zx = x W_ih^T computed inside (in chunks without the cache) and bias added in the cell");
  m.def("gru_forward", &lstmkit::gru_forward, "(zx, h0, w_hh, b_hh, lengths, cache) -> [gates, ghn, hs] (cache false: [None, None, hs])");
  m.def("gru_backward", &lstmkit::gru_backward, "(dhs, gates, ghn, hs, h0, w_hh, lengths) -> [dzx, dgh, dh0]");
  m.def("rnn_forward", &lstmkit::rnn_forward, "(zx, h0, w_hh, nonlinearity, lengths) -> hs");
  m.def("lstm_cell_forward", &lstmkit::lstm_cell_forward,
        "(x, h, c, w_ih, w_hh, b_ih, b_hh, path, cache) -> [h', c'] (cache: [h', c', gates])");
  m.def("gru_cell_forward", &lstmkit::gru_cell_forward,
        "(x, h, w_ih, w_hh, b_ih, b_hh, cache) -> [h'] (cache: [h', gates, ghn])");
  m.def("rnn_cell_forward", &lstmkit::rnn_cell_forward, "(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity) -> h'");
  m.def("rnn_cell_step", &lstmkit::rnn_cell_step,
        "(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity) -> h' with its autograd node (the backward in C++)");
  m.def("lstm_cell_backward", &lstmkit::lstm_cell_backward,
        "(dh, dc, x, h, c, w_ih, w_hh, gates, c_new, need, path) -> [dx, dh, dc, dw_ih, dw_hh, db]");
  m.def("gru_cell_backward", &lstmkit::gru_cell_backward,
        "(dh, x, h, w_ih, w_hh, gates, ghn, h_new, need) -> [dx, dh, dw_ih, dw_hh, db_ih, db_hh]");
  m.def("rnn_backward", &lstmkit::rnn_backward, "(dhs, hs, w_hh, nonlinearity, lengths) -> [dz, dh0]");
}
