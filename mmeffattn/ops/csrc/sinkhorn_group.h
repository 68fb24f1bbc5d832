// Sinkhorn's scaling iterations and their reverse pass for one Gibbs kernel
// K (N x M, row-major, in cache): fused loops instead of one batched GEMM
// with a single column (and its divides and clamps) per update. Used by
// sinkhorn_cpu.cpp (a batch of kernels) and set_nystrom_cpu.cpp (SeT's
// fused attention, one (batch, head) group at a time).
//
// Schedule (ops/sinkhorn.py's _alternate): updates alternate row, column,
// row, ... starting with a row update from v = 1; n_updates = 2L (ending with
// a column update) or 2L + 1 (ending with a row update).
//   row r:    s = max(K v, tiny),   u = a / s   (v: column output r - 1)
//   column c: t = max(u^T K, tiny), v = b / t   (u: row output c)
// Kept for backward: every output and denominator (N or M values); iterate r
// of U / S starts at U + r * row_step, of V / D at V + r * col_step.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mmeffattn {

template <typename T>
void sinkhorn_group_forward(const T* k, const T* a, const T* b, int64_t N,
                            int64_t M, int n_updates, T tiny, T* U, T* S,
                            int64_t row_step, T* V, T* D, int64_t col_step) {
  std::vector<T> ones(M, T(1)), t(M);
  const T* v_in = ones.data();
  const T* u_in = nullptr;
  for (int up = 0; up < n_updates; ++up) {
    const int64_t r = up / 2;
    if (up % 2 == 0) {  // row update
      T* u = U + r * row_step;
      T* s = S + r * row_step;
      for (int64_t i = 0; i < N; ++i) {
        const T* ki = k + i * M;
        T dot = 0;
        for (int64_t j = 0; j < M; ++j) dot += ki[j] * v_in[j];
        dot = std::max(dot, tiny);
        s[i] = dot;
        u[i] = a[i] / dot;
      }
      u_in = u;
    } else {  // column update
      std::fill(t.begin(), t.end(), T(0));
      for (int64_t i = 0; i < N; ++i) {
        const T ui = u_in[i];
        const T* ki = k + i * M;
        for (int64_t j = 0; j < M; ++j) t[j] += ui * ki[j];
      }
      T* v = V + r * col_step;
      T* d = D + r * col_step;
      for (int64_t j = 0; j < M; ++j) {
        d[j] = std::max(t[j], tiny);
        v[j] = b[j] / d[j];
      }
      v_in = v;
    }
  }
}

// Reverse pass: the rank-1 terms dL/dK += left (N) x right (M) of every
// update, written as column `step` of left (N, n) and row `step` of right
// (n, M), step 0 being the last update. grad_u / grad_v: dL/du, dL/dv of
// the final scalings; n = n_updates.
template <typename T>
void sinkhorn_group_backward(const T* k, const T* U, const T* S,
                             int64_t row_step, const T* V, const T* D,
                             int64_t col_step, const T* grad_u,
                             const T* grad_v, int64_t N, int64_t M, int n,
                             T tiny, T* left, T* right) {
  std::vector<T> ones(M, T(1)), grad(std::max(N, M)), dd(std::max(N, M));
  if (n % 2 == 0)  // the last update is a column update
    std::copy(grad_v, grad_v + M, grad.begin());
  else
    std::copy(grad_u, grad_u + N, grad.begin());
  for (int step = 0; step < n; ++step) {
    const int up = n - 1 - step;
    const int64_t r = up / 2;
    if (up % 2 == 1) {  // column: v = b / t, t = u^T K, u = U[r]
      const T* out = V + r * col_step;
      const T* den = D + r * col_step;
      const T* x_in = U + r * row_step;
      for (int64_t j = 0; j < M; ++j)
        dd[j] = den[j] <= tiny ? T(0) : -grad[j] * out[j] / den[j];
      for (int64_t i = 0; i < N; ++i) left[i * n + step] = x_in[i];
      for (int64_t j = 0; j < M; ++j) right[step * M + j] = dd[j];
      if (step == n - 1) break;
      for (int64_t i = 0; i < N; ++i) {  // dL/du = K dd
        const T* ki = k + i * M;
        T dot = 0;
        for (int64_t j = 0; j < M; ++j) dot += ki[j] * dd[j];
        grad[i] = dot + (step == 0 ? grad_u[i] : T(0));
      }
    } else {  // row: u = a / s, s = K v, v = V[r - 1] or 1
      const T* out = U + r * row_step;
      const T* den = S + r * row_step;
      const T* x_in = r > 0 ? V + (r - 1) * col_step : ones.data();
      for (int64_t i = 0; i < N; ++i)
        dd[i] = den[i] <= tiny ? T(0) : -grad[i] * out[i] / den[i];
      for (int64_t i = 0; i < N; ++i) left[i * n + step] = dd[i];
      for (int64_t j = 0; j < M; ++j) right[step * M + j] = x_in[j];
      if (step == n - 1) break;
      for (int64_t j = 0; j < M; ++j)  // dL/dv = dd^T K
        grad[j] = step == 0 ? grad_v[j] : T(0);
      for (int64_t i = 0; i < N; ++i) {
        const T di = dd[i];
        const T* ki = k + i * M;
        for (int64_t j = 0; j < M; ++j) grad[j] += di * ki[j];
      }
    }
  }
}

}  // namespace mmeffattn
