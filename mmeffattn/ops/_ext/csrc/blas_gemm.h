// Row-major GEMM on raw pointers for the CPU kernels' row tiles:
//   C (M x N) = alpha op(A) op(B) + beta C,  op(A) M x K, op(B) K x N,
// with row strides lda / ldb / ldc (so strided rows of q / k / v / out are
// read and written in place). Calls the BLAS that torch links (MKL's sgemm_
// / dgemm_, about 1 us a call) when it exports one; otherwise ATen's addmm
// on views of the same memory (about 6 us a call). Single-threaded inside
// an at::parallel_for region, as at::mm is.
#pragma once

#include <torch/extension.h>

#include <cstdint>

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*,
            const float*, const float*, const int*, const float*, const int*,
            const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*,
            const double*, const double*, const int*, const double*,
            const int*, const double*, double*, const int*)
    __attribute__((weak));
}

namespace mmeffattn {

template <typename T>
void gemm_aten(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
               T beta, T* C, int64_t ldc) {
  const auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>());
  auto view = [&](const T* ptr, int64_t rows, int64_t cols, int64_t ld,
                  bool trans) {
    at::Tensor t = at::from_blob(const_cast<T*>(ptr),
                                 {trans ? cols : rows, trans ? rows : cols},
                                 {ld, 1}, opt);
    return trans ? t.t() : t;
  };
  at::Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opt);
  const at::Tensor a = view(A, M, K, lda, trans_a);
  const at::Tensor b = view(B, K, N, ldb, trans_b);
  if (beta == T(0)) {
    at::mm_out(c, a, b);
    if (alpha != T(1)) c.mul_(alpha);
  } else {
    c.addmm_(a, b, beta, alpha);
  }
}

// Column-major BLAS on row-major data: C^T = op(B)^T op(A)^T.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          T alpha, const T* A, int64_t lda, const T* B, int64_t ldb, T beta,
          T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
  const int m = int(N), n = int(M), k = int(K);
  const int la = int(lda), lb = int(ldb), lc = int(ldc);
  if constexpr (std::is_same<T, float>::value) {
    if (sgemm_) {
      sgemm_(&tb, &ta, &m, &n, &k, &alpha, B, &lb, A, &la, &beta, C, &lc);
      return;
    }
  } else if constexpr (std::is_same<T, double>::value) {
    if (dgemm_) {
      dgemm_(&tb, &ta, &m, &n, &k, &alpha, B, &lb, A, &la, &beta, C, &lc);
      return;
    }
  }
  gemm_aten<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
               ldc);
}

}  // namespace mmeffattn
