// entries.h: the compiled entry points, declared once: bindings.cpp names them for Python, and
// cell_cpu.cpp composes the one-step cells from the sequence recurrences. Each is defined in the
// file of its cell (lstm_cpu.cpp, gru_cpu.cpp, rnn_cpu.cpp, cell_cpu.cpp) or of its job (cell_autograd.cpp,
// gemm.cpp, tuning.cpp, stack_cpu.cpp).
#pragma once

#include <torch/extension.h>

#include <map>
#include <string>
#include <vector>

namespace lstmkit {
std::map<std::string, int64_t> get_tuning(int64_t threads);
void set_tuning(int64_t threads, const std::string& name, int64_t value);
std::map<std::string, int64_t> default_tuning();
at::Tensor gemm(const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& init);
std::string gemm_backend(const std::string& dtype, int64_t M, int64_t K, int64_t N);
std::string gemm_path(const at::Tensor& a, const at::Tensor& b);
int64_t vector_bytes();
int64_t cache_size(int64_t level);
bool cores_busy_now();
void set_cores_busy(bool busy);
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
std::vector<at::Tensor> lstm_layer_forward_pair(
    const at::Tensor& x, const at::Tensor& x_rev, const at::Tensor& h0, const at::Tensor& c0,
    const at::Tensor& h0_rev, const at::Tensor& c0_rev, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& w_hr, const at::Tensor& w_ih_rev,
    const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& bias_rev, const c10::optional<at::Tensor>& w_hr_rev,
    int64_t path, int64_t chunk_elems);
std::vector<at::Tensor> gru_forward(const at::Tensor& zx, const at::Tensor& h0, const at::Tensor& w_hh,
                                    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& lengths,
                                    bool cache);
std::vector<at::Tensor> gru_backward(const at::Tensor& dhs, const at::Tensor& gates, const at::Tensor& ghn,
                                     const at::Tensor& hs, const at::Tensor& h0, const at::Tensor& w_hh,
                                     const c10::optional<at::Tensor>& lengths);
std::vector<at::Tensor> lstm_one_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& c0,
                                      const at::Tensor& w_ih, const at::Tensor& w_hh,
                                      const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                                      bool cache, bool gemm_calls);
std::vector<at::Tensor> gru_one_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                                     const c10::optional<at::Tensor>& b_hh, bool cache);
// How rnn_one_step takes its step: one row (a team by units, dot products against the weights as
// stored); rows by one team on the weights as stored (one_step.h's rows_team_step); two products by
// gemm.h into one buffer.
enum class RnnRows { kOneRow, kTeam, kGemmCalls };
at::Tensor rnn_one_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                        const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                        const std::string& nonlinearity, RnnRows path);
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
std::vector<at::Tensor> lstm_cell_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& c,
                                       const at::Tensor& w_ih, const at::Tensor& w_hh,
                                       const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
                                       int64_t path);
at::Tensor gru_cell_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh);
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
// watchers.cpp: no tracer, torch-function or torch-dispatch mode or CPU autocast now.
bool dispatch_unwatched();
std::vector<at::Tensor> stack_inference(const std::string& kind, const at::Tensor& input,
                                        const std::vector<at::Tensor>& state,
                                        const std::vector<c10::optional<at::Tensor>>& weights, int64_t directions,
                                        const std::string& nonlinearity, int64_t path, int64_t chunk_elems);
std::vector<at::Tensor> stack_one_step(const std::string& kind, const at::Tensor& input,
                                       const std::vector<at::Tensor>& state,
                                       const std::vector<c10::optional<at::Tensor>>& weights,
                                       const std::string& nonlinearity, int64_t path);
}  // namespace lstmkit
