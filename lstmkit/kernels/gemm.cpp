// gemm.cpp: gemm.h's choice and product for Python (the tests check both; the weight gradients
// of the LSTM's backward take its product), the vector width the kernel was built for, and the cache sizes it reads.
#include <torch/extension.h>

#include <string>

#include "checks.h"
#include "entries.h"
#include "gemm.h"

namespace lstmkit {

// (init +) a (M,K) b (K,N) -> (M,N), a new tensor; init (N,) or (M,N), e.g. a bias. a and b may
// have any strides (every GEMM here takes views, e.g. dz^T, as they are), so only their rank, sizes,
// dtype and device are checked here.
at::Tensor gemm(const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& init) {
  const Checks c("gemm", "a", a);
  c.rank("a", a, 2, "(M, K)");
  c.rank("b", b, 2, "(K, N)");
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(), "gemm: a and b should be on the CPU, got ", a.device(),
              " and ", b.device());
  TORCH_CHECK(b.scalar_type() == a.scalar_type(), "gemm: b should have dtype ", a.scalar_type(), " (as a), got ",
              b.scalar_type());
  TORCH_CHECK(b.size(0) == a.size(1), "gemm: b should have shape (K, N) with K = ", a.size(1), " (a's columns), got ",
              shape_str(b.sizes()));
  if (init) {
    TORCH_CHECK(init->device().is_cpu() && init->scalar_type() == a.scalar_type(), "gemm: init should be a CPU tensor of dtype ",
                a.scalar_type(), " (as a), got ", init->scalar_type(), " on ", init->device());
    TORCH_CHECK((init->dim() == 1 && init->size(0) == b.size(1)) ||
                    (init->dim() == 2 && init->size(0) == a.size(0) && init->size(1) == b.size(1)),
                "gemm: init should have shape (N,) or (M, N) = (", a.size(0), ", ", b.size(1), "), got ",
                shape_str(init->sizes()));
  }
  return gemm_new(a, b, init);
}

// Which way gemm(a, b) takes its product now: "few rows" (few_rows), "W as stored" (nt_rows: b the
// transposed view of a row-major W), "onednn" or "aten" (gemm.h). Sizes and dtypes are not checked:
// what gemm would refuse is answered "aten".
std::string gemm_path(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, "gemm_path: a and b should be 2-D, got ", a.dim(), "-D and ", b.dim(), "-D");
  if (a.size(1) != b.size(0)) return "aten";
  if (few_rows_fit(a, b)) return "few rows";                                   // (gemm's out: new, contiguous)
  if (nt_rows_fit(a, b)) return "W as stored";
  return gemm_uses_onednn(a.scalar_type(), a.size(0), a.size(1), b.size(1)) ? "onednn" : "aten";
}

// "onednn" or "aten": which library gemm() takes for these sizes and this dtype, now, where it does
// not take the product by hand (gemm_path says for a and b themselves).
std::string gemm_backend(const std::string& dtype, int64_t M, int64_t K, int64_t N) {
  TORCH_CHECK(dtype == "float32" || dtype == "float64", "gemm_backend: dtype should be float32 or float64, got ", dtype);
  return gemm_uses_onednn(dtype == "float32" ? at::kFloat : at::kDouble, M, K, N) ? "onednn" : "aten";
}

// Bytes of one vector register the kernel was built for (cpu_math.h): 64 AVX-512, 32 AVX2, 16 else.
int64_t vector_bytes() { return kVectorBytes; }

// The cache sizes the kernels' paths read (cpu_math.h's cache_bytes): level 2, one core's; 3, shared.
int64_t cache_size(int64_t level) {
  TORCH_CHECK(level == 2 || level == 3, "cache_size: level should be 2 or 3, got ", level);
  return cache_bytes(static_cast<int>(level));
}

// Whether the kernels run their teams on the calling thread alone now, another process holding a
// core (cpu_math.h's cores_busy); set_cores_busy marks the cores busy for the backoff, or clears the
// mark (what the tests of that path use).
bool cores_busy_now() { return cores_busy(); }
void set_cores_busy(bool busy) { busy ? mark_cores_busy() : clear_cores_busy(); }

}  // namespace lstmkit
