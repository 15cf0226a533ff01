// cpu_math.h: the scalar building blocks of the CPU recurrences, written so the compiler
// vectorizes them (plain branch-free loops, -O3 -march=native).
//
// What it is: exp / sigmoid / tanh accurate to a few ulp in float and double, and a small
// matrix product `out[b, n] (+)= sum_k x[b, k] * A[k, n]` for the few-rows case (batch 1..16),
// where calling a BLAS per step costs more than the arithmetic.
// What it is not: a BLAS. Large batches go to ATen's GEMM (MKL / oneDNN).
// References: Cody & Waite range reduction for exp; tanh(x) = (1 - e^{-2|x|}) / (1 + e^{-2|x|}),
// with its Taylor series near 0 where that quotient cancels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace lstmkit {

template <typename T> struct ExpConst;
template <> struct ExpConst<float> {
  using int_t = int32_t;
  static constexpr int degree = 7;
  static constexpr float lo = -87.3f, hi = 88.7f;
  static constexpr int bias = 127, mant = 23;
};
template <> struct ExpConst<double> {
  using int_t = int64_t;
  static constexpr double lo = -708.0, hi = 709.0;
  static constexpr int bias = 1023, mant = 52;
  static constexpr int degree = 13;
};

// 1 / k!, the Taylor coefficients of e^r.
constexpr double inv_fact(int k) { return k == 0 ? 1.0 : inv_fact(k - 1) / k; }

// exp(x) = 2^n * e^r, n = round(x / ln2), |r| <= ln2/2; e^r by its Taylor polynomial.
template <typename T>
inline T exp_(T x) {
  using C = ExpConst<T>;
  x = std::min(std::max(x, T(C::lo)), T(C::hi));
  const T n = __builtin_floor(x * T(1.4426950408889634) + T(0.5));
  const T r = (x - n * T(0.693145751953125)) - n * T(1.428606820309417232e-06);   // ln2 hi + lo
  T p = T(inv_fact(C::degree));
  for (int k = C::degree - 1; k >= 0; --k) p = p * r + T(inv_fact(k));   // Horner on sum r^k / k!
  const typename C::int_t bits = (static_cast<typename C::int_t>(n) + C::bias) << C::mant;
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return p * scale;
}

template <typename T>
inline T sigmoid_(T x) { return T(1) / (T(1) + exp_(-x)); }

// tanh: the quotient form away from 0, the odd Taylor series for |x| < 1/16 (no cancellation).
template <typename T>
inline T tanh_(T x) {
  const T a = x < T(0) ? -x : x;
  const T e = exp_(T(-2) * a);
  const T q = (T(1) - e) / (T(1) + e);
  const T x2 = x * x;
  const T s = x * (T(1) + x2 * (T(-1.0 / 3) + x2 * (T(2.0 / 15) + x2 * (T(-17.0 / 315) + x2 * (
      T(62.0 / 2835) + x2 * (T(-1382.0 / 155925) + x2 * (T(21844.0 / 6081075))))))));
  return a < T(0.0625) ? s : (x < T(0) ? -q : q);
}

// out[b, n0:n1] = (init ? init[b, n0:n1] : 0) + sum_k x[b, k] * A[k, n0:n1], for b < B.
// A (K, N) row-major with row stride lda: each step streams its columns once per batch row,
// a block of NB columns at a time so that block stays in L1 across the batch rows.
template <typename T>
inline void small_gemm(T* out, int64_t ldo, const T* init, int64_t ldi, const T* x, int64_t ldx,
                       const T* A, int64_t lda, int64_t B, int64_t K, int64_t n0, int64_t n1) {
  constexpr int64_t NB = 64 / sizeof(T) * 4;                  // 4 vector registers of columns
  for (int64_t nb = n0; nb < n1; nb += NB) {
    const int64_t w = std::min(NB, n1 - nb);
    for (int64_t b = 0; b < B; ++b) {
      T acc[NB];
      const T* src = init ? init + b * ldi + nb : nullptr;
      for (int64_t u = 0; u < NB; ++u) acc[u] = (src && u < w) ? src[u] : T(0);
      const T* xb = x + b * ldx;
      if (w == NB) {
        for (int64_t k = 0; k < K; ++k) {
          const T xk = xb[k];
          const T* a = A + k * lda + nb;
          for (int64_t u = 0; u < NB; ++u) acc[u] += xk * a[u];
        }
      } else {
        for (int64_t k = 0; k < K; ++k) {
          const T xk = xb[k];
          const T* a = A + k * lda + nb;
          for (int64_t u = 0; u < w; ++u) acc[u] += xk * a[u];
        }
      }
      T* o = out + b * ldo + nb;
      for (int64_t u = 0; u < w; ++u) o[u] = acc[u];
    }
  }
}

}  // namespace lstmkit
