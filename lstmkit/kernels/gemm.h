// gemm.h: the large products of a call (input projections, steps of many rows) by the fastest
// GEMM this PyTorch has for them.
//
// What it is: gemm_out(out, a, b, accumulate): out = (accumulate ? out : 0) + a b, for 2-D strided
// CPU tensors (a or b may be transposed views). float32 goes to oneDNN's matmul, the kernel behind
// nn.LSTM's own oneDNN path, where that is available and computes in full float32; everything else
// to ATen's (MKL). Measured side by side, 2 threads, this AMD EPYC: oneDNN 108 G multiply-adds a
// second at (256 x 650) x (650 x 2600), MKL 95; 93 against 82 at 64 rows.
// How it finds oneDNN: at::native::mkldnn_matmul (what torch's own addmm calls in its oneDNN
// modes) is exported by libtorch_cpu but not in PyTorch's public headers, so it is declared here
// as a weak symbol: a PyTorch without it still loads this extension and takes ATen's GEMM. It is
// used only where (1) it exists (Linux), (2) this is PyTorch 2.13 or newer (where the float32
// precision it reads is the one checked here), (3) oneDNN is enabled (torch.backends.mkldnn) and
// not set to compute float32 in bf16 or tf32, nor torch.set_float32_matmul_precision below
// "highest", and (4) its first call gave the exact product of a small test (it refuses float32 on a
// CPU without AVX-512 BW/VL/DQ or AVX-NE-CONVERT, e.g. AVX2 alone); otherwise ATen's, so no setting
// of the user's is bypassed and no result is approximated.
// Products of one or two rows whose weights fit in one core's L2 (a cell's step from Python, its
// backward's dx) are taken by hand (cpu_math.h's step products, on the operands as stored): a GEMM
// call's set-up is ~3 us at (1,128)x(128,128), ten times the product. So are x W^T of 3 to
// kNtMaxRows rows with W as stored (nt_gemm.h), where oneDNN is not taken.
// What it is not: a BLAS of its own. Products small enough that the call itself costs more take
// ATen's too (limit(kOneDnnMinWork), tuning.h).
#pragma once

#include <ATen/ATen.h>
#include <torch/version.h>

#include "cpu_math.h"
#include "nt_gemm.h"
#include "tuning.h"

// A weak reference is an ELF feature (GCC and Clang on Linux); elsewhere (MSVC, Mach-O) oneDNN's
// matmul is not looked for and every product is ATen's.
#if defined(__linux__) && defined(__GNUC__) && \
    (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 13))
#define LSTMKIT_ONEDNN_MATMUL 1
namespace at::native {
// (mat1, mat2, result, beta, alpha): result = beta result + alpha mat1 mat2, by oneDNN.
__attribute__((weak)) void mkldnn_matmul(const at::Tensor& mat1, const at::Tensor& mat2, const at::Tensor& result,
                                         float beta, float alpha);
}  // namespace at::native
#endif

namespace lstmkit {

// Multiply-adds below which ATen's GEMM is taken (a oneDNN call costs ~10 us of set-up): the
// limit kOneDnnMinWork of tuning.h, 4 M by default, measured on the user's machine.

// Whether oneDNN may compute float32 products now (the user's settings read on every call; the
// existence and exactness test once).
inline bool onednn_usable() {
#ifdef LSTMKIT_ONEDNN_MATMUL
  if (!at::native::mkldnn_matmul) return false;
  auto& ctx = at::globalContext();
  if (!ctx.userEnabledMkldnn()) return false;
  const auto p = ctx.float32Precision(at::Float32Backend::MKLDNN, at::Float32Op::MATMUL);
  if (p == at::Float32Precision::BF16 || p == at::Float32Precision::TF32) return false;
  if (ctx.float32MatmulPrecision() != at::Float32MatmulPrecision::HIGHEST) return false;
  static const bool works = [] {
    try {                                                    // small integers: every sum is exact in float32
      const at::Tensor a = at::arange(1, 7, at::kFloat).view({2, 3}), b = at::arange(1, 13, at::kFloat).view({3, 4});
      at::Tensor out = at::ones({2, 4}, at::kFloat);
      at::native::mkldnn_matmul(a, b, out, 1.0f, 1.0f);
      return at::equal(out, at::mm(a, b) + 1);
    } catch (const std::exception&) {
      return false;
    }
  }();
  return works;
#else
  return false;
#endif
}

// Rows from which a product may go to oneDNN. Measured, torch 2.13: mkldnn_matmul corrupts the
// heap (glibc aborts: "double free or corruption") for one row times a transposed view,
// accumulated (beta = 1), e.g. a GRUCell's projection at B = 1, H = 1200: x (1,1200) W_ih^T + b_ih
// (2-16 rows, the same shapes, were right). PyTorch itself never calls it for full-precision
// float32, so only shapes tested here are given to it; a product of fewer rows is a GEMV, where it
// gains nothing anyway.
constexpr int64_t kOneDnnMinRows = 8;

// Whether gemm_out takes oneDNN for out (M,N) = a (M,K) b (K,N) of this dtype, now.
inline bool gemm_uses_onednn(at::ScalarType dtype, int64_t M, int64_t K, int64_t N) {
  return dtype == at::kFloat && M >= kOneDnnMinRows && M * K * N >= limit(kOneDnnMinWork) && onednn_usable();
}

// Whether a and b are both float32 or both float64 (the dtypes taken by hand), and out, where given,
// of that dtype with contiguous rows: what either product by hand asks of out.
inline bool hand_dtypes(const at::Tensor& a, const at::Tensor& b) {
  const auto dtype = a.scalar_type();
  return (dtype == at::kFloat || dtype == at::kDouble) && b.scalar_type() == dtype;
}
inline bool hand_out(const at::Tensor& out, const at::Tensor& a) {
  return out.scalar_type() == a.scalar_type() && out.stride(1) == 1;
}

// Rows up to which a product may be taken by hand (few_rows).
constexpr int64_t kFewRows = 2;

// out (M,N) = (accumulate ? out : 0) + a (M,K) b (K,N) by hand, where it is a product of at most
// kFewRows rows, in float32 or float64, of operands read in place (rows of a and out contiguous; b
// row-major, or the transpose of a row-major W) and b within one core's L2: a row-major b by the
// register-blocked product (small_gemm), W's rows by dot products (gemv_dot). Returns false
// (nothing done) otherwise. (StepWeight makes the same choice, but its layout checks build two
// tensor views: ~1 us more a cell step, measured; here the strides are read directly.)
// (few_rows_fit says whether it would, for an out that hand_out takes.)
inline bool few_rows_fit(const at::Tensor& a, const at::Tensor& b) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  if (M > kFewRows || M < 1 || K < 1 || N < 1 || !hand_dtypes(a, b)) return false;
  if (K * N * static_cast<int64_t>(a.element_size()) > cache_bytes(2)) return false;
  return a.stride(1) == 1 && (b.stride(1) == 1 || b.stride(0) == 1);
}
inline bool few_rows(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate) {
  if (!hand_out(out, a) || !few_rows_fit(a, b)) return false;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const auto dtype = out.scalar_type();
  const bool rowmajor = b.stride(1) == 1;
  AT_DISPATCH_FLOATING_TYPES(dtype, "few_rows", [&] {
    using T = scalar_t;
    T* o = out.data_ptr<T>();
    const T *x = a.data_ptr<T>(), *w = b.data_ptr<T>();
    const int64_t ldo = out.stride(0), ldx = a.stride(0);
    if (rowmajor) {
      small_gemm<T>(o, ldo, accumulate ? o : nullptr, ldo, x, ldx, w, b.stride(0), kPanel<T>, M, K, 0, N);
    } else {                                                 // b = W^T, W (N,K) row-major with rows b.stride(1) apart
      for (int64_t m = 0; m < M; ++m)
        gemv_dot<T>(o + m * ldo, accumulate ? o + m * ldo : nullptr, x + m * ldx, w, b.stride(1), K, 0, N);
    }
  });
  return true;
}

// Rows up to which x W^T (b the transposed view of a row-major W) is taken by nt_gemm, from 3 (fewer:
// few_rows). Measured side by side, this AMD EPYC without AVX-512, G multiply-adds a second by hand
// / ATen's (MKL), 2 threads, float32: (M,K,N) = (8,512,2048) 87 / 45, (20,200,800) 75 / 63, (64,650,
// 2600) 111 / 93, (128,300,1200) 128 / 120, (256,200,800) 116 / 131, (512,200,800) 113 / 140; one
// thread (20,200,800) 41 / 46, (64,650,2600) 59 / 54, (256,100,400) 61 / 74; float64 alike
// ((8,512,2048) 61 / 23, (64,1300,2600) 61 / 53, (256,200,800) 56 / 64).
constexpr int64_t kNtMaxRows = 128;

// On one thread x W^T is taken by hand only where W passes kNtOneThreadL2 L2 caches: MKL's is ahead
// where W is about one L2 (one thread, float32, 512 KB of L2: (20,200,800) 42 / 45, (20,256,1024)
// 43 / 46) and behind from about three ((64,300,1200) 65 / 60, (20,512,2048) 48 / 42, (20,650,2600)
// 36 / 28, (8,300,1200) 42 / 32).
constexpr int64_t kNtOneThreadL2 = 2;

// out (M,N) = (accumulate ? out : 0) + a (M,K) W^T by nt_gemm, where b (K,N) is the transposed view
// of a row-major W (N,K), 3 <= M <= kNtMaxRows, rows of a and out contiguous, float32 or float64,
// two threads or more or W past kNtOneThreadL2 L2 caches, and oneDNN does not take it. Returns false
// (nothing done) otherwise (nt_rows_fit says whether it would, for an out that hand_out takes).
inline bool nt_rows_fit(const at::Tensor& a, const at::Tensor& b) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  if (M <= kFewRows || M > kNtMaxRows || K < 1 || N < 1 || !hand_dtypes(a, b)) return false;
  if (b.stride(0) != 1 || b.stride(1) < K || a.stride(1) != 1) return false;
  const int64_t w_bytes = K * N * static_cast<int64_t>(a.element_size());
  if (at::get_num_threads() == 1 && w_bytes <= kNtOneThreadL2 * cache_bytes(2)) return false;
  return !gemm_uses_onednn(a.scalar_type(), M, K, N);
}
inline bool nt_rows(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate) {
  if (!hand_out(out, a) || !nt_rows_fit(a, b)) return false;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "nt_rows", [&] {
    using T = scalar_t;
    T* o = out.data_ptr<T>();
    nt_gemm<T>(o, out.stride(0), accumulate ? o : nullptr, out.stride(0), a.data_ptr<T>(), a.stride(0), M, K,
               b.data_ptr<T>(), b.stride(1), N);
  });
  return true;
}

// out (M,N) = (accumulate ? out : 0) + a (M,K) b (K,N).
inline void gemm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate) {
  if (few_rows(out, a, b, accumulate) || nt_rows(out, a, b, accumulate)) return;
#ifdef LSTMKIT_ONEDNN_MATMUL
  if (gemm_uses_onednn(out.scalar_type(), a.size(0), a.size(1), b.size(1))) {
    at::native::mkldnn_matmul(a, b, out, accumulate ? 1.0f : 0.0f, 1.0f);
    return;
  }
#endif
  if (accumulate) out.addmm_(a, b);
  else at::mm_out(out, a, b);
}

// (init +) a (M,K) b (K,N): a new (M,N) tensor; init broadcasts to (M,N) (a bias (N,), or (M,N)).
inline at::Tensor gemm_new(const at::Tensor& a, const at::Tensor& b,
                           const c10::optional<at::Tensor>& init = c10::nullopt) {
  const int64_t M = a.size(0), N = b.size(1);
  const bool by_hand = few_rows_fit(a, b) || nt_rows_fit(a, b);             // (out below: hand_out takes it)
  if (!by_hand && !gemm_uses_onednn(a.scalar_type(), M, a.size(1), N))
    return init ? at::addmm(*init, a, b) : at::mm(a, b);
  // a new tensor always (expand(...).contiguous() of one row is init itself: its storage would be written)
  at::Tensor out = at::empty({M, N}, a.options());
  if (init) out.copy_(init->expand({M, N}));
  gemm_out(out, a, b, init.has_value());
  return out;
}

}  // namespace lstmkit
