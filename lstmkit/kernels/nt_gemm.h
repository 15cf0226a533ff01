// nt_gemm.h: out = init + x W^T with W as stored (rows of N outputs by K inputs), by hand, for the
// products whose weights stay as the user keeps them: a cell's step with a batch, the input
// projection of a short sequence.
//
// What it is: the product taken transposed, out^T (N,M) = W (N,K) x^T (K,M): W's rows are the rows
// the register block broadcasts (cpu_math.h's gemm_rows, as they are stored: no copy of W), and x^T
// is packed in panels (M K elements, against the M N K multiply-adds that read it). Each thread
// takes whole blocks of kNtRows of W's rows, so W is read once in all; a block's out^T is built in
// a buffer of the thread's (from init^T) and written back transposed, L x L tiles in registers.
// Every output is init plus one chain of FMAs over k in order, as in cpu_math.h's small_gemm and
// StepWeight (blocks of k accumulate in the buffer), whatever the threads or blocks: results do not
// depend on the thread count, nor on which of these products took them.
// Why: a GEMM's x W^T (ATen's, MKL's "NT" case on this AMD EPYC without AVX-512) ran 51-75 G
// multiply-adds a second at B = 20-64 rows, K = 200-1300, N = 800-2600, 2 threads; this 60-130
// (kNtMaxRows says up to where).
// What it is not: a BLAS. Rows past kNtMaxRows, other layouts and dtypes go to gemm.h's others.
// Dimensions: M rows of x, K inputs, N outputs (W's rows).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>

#include "cpu_math.h"

namespace lstmkit {

// W's rows a block (a thread's unit of work): 48 = 8 groups of 6 (AVX2) or 6 of 8 (AVX-512).
constexpr int64_t kNtRows = 48;

// Inputs a block of k: the block of W (kNtRows x kNtDepth) and of x^T stay in L2 together.
constexpr int64_t kNtDepth = 512;

// Multiply-adds a thread takes at least: below, waking a second thread costs more than it saves.
// Measured (this AMD EPYC, Zen 3, one thread / two, us): (M,K,N) = (20,200,200) 44 / 73, (8,128,128)
// 18.5 / 23.4, (3,64,64) 11.7 / 14.5; (8,128,512) 42 / 43; (8,256,1024) (2 M) 139 / 80.
constexpr int64_t kNtThreadWork = int64_t(1) << 20;

// dst[c ldd + r] = src[r lds + c] for r < R, c < C: L x L tiles transposed in registers, the ragged
// edges one by one. Takes init into a block's out^T, and the block back into out.
template <typename T>
inline void transpose_into(T* dst, int64_t ldd, const T* src, int64_t lds, int64_t R, int64_t C) {
  using V = vec_t<T>;
  constexpr int64_t L = kLanes<T>;
  int64_t r = 0;
  for (; r + L <= R; r += L) {
    int64_t c = 0;
    for (; c + L <= C; c += L) {
      V v[L];
      for (int64_t i = 0; i < L; ++i) v[i] = load(src + (r + i) * lds + c);
      transpose_stage<V, L, L / 2>(v);                                          // v[i]: column c + i, rows r..
      for (int64_t i = 0; i < L; ++i) store(dst + (c + i) * ldd + r, v[i]);
    }
    for (; c < C; ++c)
      for (int64_t i = 0; i < L; ++i) dst[c * ldd + r + i] = src[(r + i) * lds + c];
  }
  for (; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) dst[c * ldd + r] = src[r * lds + c];
}

// x (M,K) as nt_gemm reads it: x^T in panels of kPanel of x's rows ((ceil(M/NP), K, NP) elements).
template <typename T>
struct NtRows {
  std::unique_ptr<T[]> store;
  const T* xp;
  int64_t M, K, ldb;                                                            // ldb: M in whole panels
  NtRows(const T* x, int64_t ldx, int64_t M_, int64_t K_) : M(M_), K(K_) {
    constexpr int64_t NP = kPanel<T>;
    const at::Tensor xT = at::from_blob(const_cast<T*>(x), {M, K}, {ldx, 1}, c10::CppTypeToScalarType<T>::value).t();
    store.reset(new T[(M + NP - 1) / NP * K * NP]);                             // every element written by the packing
    pack_panels_into<T>(xT, NP, store.get());
    xp = store.get();
    ldb = (M + NP - 1) / NP * NP;
  }
  // a thread's scratch for one block's out^T (kNtRows, ldb): no zeros, each element written before read
  std::unique_ptr<T[]> scratch() const { return std::unique_ptr<T[]>(new T[kNtRows * ldb]); }
};

// out[:, n0:n1) = (init ? init : 0) + x W[n0:n1)^T, x packed (NtRows), W (N,K) with rows ldw apart,
// in blocks of kNtRows of W's rows, buf a thread's scratch (NtRows::scratch). init may be out itself.
// K = 0 (no inputs): init, or zeros.
template <typename T>
inline void nt_columns(T* out, int64_t ldo, const T* init, int64_t ldi, const NtRows<T>& x, const T* W, int64_t ldw,
                       int64_t n0, int64_t n1, T* buf) {
  constexpr int64_t NP = kPanel<T>;
  const int64_t M = x.M, K = x.K, ldb = x.ldb, ps = K * NP;
  if (K == 0 && !init) {                                                        // (no product writes buf)
    for (int64_t r = 0; r < M; ++r) std::fill(out + r * ldo + n0, out + r * ldo + n1, T(0));
    return;
  }
  for (int64_t n = n0; n < n1; n += kNtRows) {
    const int64_t nn = std::min(kNtRows, n1 - n);
    if (init) transpose_into(buf, ldb, init + n, ldi, M, nn);                   // out^T starts as init^T
    for (int64_t k0 = 0; k0 < K; k0 += kNtDepth) {
      const int64_t kn = std::min(kNtDepth, K - k0);
      for (int64_t m = 0; m < M; m += NP) {                                     // a panel of x^T: NP of x's rows
        for_each_row_group(nn, [&](int64_t g, int64_t rows) {
          with_rows(rows, [&](auto R) {
            T* o = buf + g * ldb + m;
            const T* from = k0 || init ? o : nullptr;
            gemm_rows<T, decltype(R)::value, kPanelVectors>(o, ldb, from, ldb, W + (n + g) * ldw + k0, ldw,
                                                            x.xp + m / NP * ps + k0 * NP, NP, ps, kn, 0,
                                                            std::min(NP, M - m));
          });
        });
      }
    }
    transpose_into(out + n, ldo, buf, ldb, nn, M);
  }
}

// out (M,N) = (init ? init : 0) + x (M,K) W^T, W (N,K) with rows ldw apart; rows of x, out and init
// contiguous (init may be out itself: accumulate). Threads of ATen's parallel_for (cpu_math.h's
// parallel_rows), each taking whole blocks of kNtRows of W's rows. Made for the few rows of gemm.h's kNtMaxRows: x^T's panels (M K
// elements) stay in one core's L2 while the thread's blocks of W pass over them, and its buffer
// holds a block's kNtRows rows of out^T whole.
template <typename T>
inline void nt_gemm(T* out, int64_t ldo, const T* init, int64_t ldi, const T* x, int64_t ldx, int64_t M, int64_t K,
                    const T* W, int64_t ldw, int64_t N) {
  const NtRows<T> xp(x, ldx, M, K);
  const int64_t blocks = (N + kNtRows - 1) / kNtRows;
  const int64_t grain = std::max<int64_t>(1, kNtThreadWork / (kNtRows * M * std::max<int64_t>(K, 1)));
  parallel_rows(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    const auto buf = xp.scratch();
    nt_columns<T>(out, ldo, init, ldi, xp, W, ldw, b0 * kNtRows, std::min(N, b1 * kNtRows), buf.get());
  });
}

}  // namespace lstmkit
