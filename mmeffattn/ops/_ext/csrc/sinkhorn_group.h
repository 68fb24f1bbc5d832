// Sinkhorn's scaling iterations and their reverse pass for one Gibbs kernel
// K (N x M, row-major, in cache): fused loops instead of one batched GEMM
// with a single column (and its divides and clamps) per update. Used by
// sinkhorn_cpu.cpp (a batch of kernels) and set_nystrom_cpu.cpp (SeT's
// fused attention, one (batch, head) group at a time).
//
// Schedule (ops/set/sinkhorn.py's _alternate): updates alternate row, column,
// row, ... starting with a row update from v = 1; n_updates = 2L (ending with
// a column update) or 2L + 1 (ending with a row update).
//   row r:    s = max(K v, tiny),   u = a / s   (v: column output r - 1)
//   column c: t = max(u^T K, tiny), v = b / t   (u: row output c)
// Kept for backward: every output and denominator (N or M values); iterate r
// of U / S starts at U + r * row_step, of V / D at V + r * col_step.
// Each pass over K does a row update and the column update after it (and
// backward, their reverse): L + 1 passes for 2L + 1 updates, not 2L + 1.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mmeffattn {

// A row update and the column update after it share one pass over K:
// row i's u_i is known as soon as its dot product is, and t accumulates it
// at once (the same arithmetic, in the same order, as two passes).
template <typename T>
void sinkhorn_group_forward(const T* k, const T* a, const T* b, int64_t N,
                            int64_t M, int n_updates, T tiny, T* U, T* S,
                            int64_t row_step, T* V, T* D, int64_t col_step) {
  std::vector<T> ones(M, T(1)), t(M);
  const T* v_in = ones.data();
  for (int up = 0; up < n_updates; up += 2) {
    const int64_t r = up / 2;
    const bool column = up + 1 < n_updates;
    T* u = U + r * row_step;
    T* s = S + r * row_step;
    std::fill(t.begin(), t.end(), T(0));
    for (int64_t i = 0; i < N; ++i) {
      const T* ki = k + i * M;
      T dot = 0;
      for (int64_t j = 0; j < M; ++j) dot += ki[j] * v_in[j];
      dot = std::max(dot, tiny);
      s[i] = dot;
      const T ui = a[i] / dot;
      u[i] = ui;
      if (column)
        for (int64_t j = 0; j < M; ++j) t[j] += ui * ki[j];
    }
    if (!column) break;
    T* v = V + r * col_step;
    T* d = D + r * col_step;
    for (int64_t j = 0; j < M; ++j) {
      d[j] = std::max(t[j], tiny);
      v[j] = b[j] / d[j];
    }
    v_in = v;
  }
}

// Reverse pass: the rank-1 terms dL/dK += left (N) x right (M) of every
// update, written as column `step` of left (N, n) and row `step` of right
// (n, M), step 0 being the last update. grad_u / grad_v: dL/du, dL/dv of
// the final scalings; n = n_updates. A column step and the row step before
// it (in forward order) share one pass over K: row i's dL/du_i gives its
// dd_i, which goes into dL/dv at once.
template <typename T>
void sinkhorn_group_backward(const T* k, const T* U, const T* S,
                             int64_t row_step, const T* V, const T* D,
                             int64_t col_step, const T* grad_u,
                             const T* grad_v, int64_t N, int64_t M, int n,
                             T tiny, T* left, T* right) {
  std::vector<T> ones(M, T(1)), grad(M), dd(M);
  // row update r: u = a / s, s = K v, v = V[r - 1] or 1
  auto row_input = [&](int64_t r) {
    return r > 0 ? V + (r - 1) * col_step : ones.data();
  };
  int step = 0;
  if (n % 2 == 1) {  // the last update is a row update: alone
    const int64_t r = (n - 1) / 2;
    const T* out = U + r * row_step;
    const T* den = S + r * row_step;
    std::copy(grad_v, grad_v + M, grad.begin());
    for (int64_t i = 0; i < N; ++i) {
      const T di = den[i] <= tiny ? T(0) : -grad_u[i] * out[i] / den[i];
      left[i * n] = di;
      if (n > 1) {  // dL/dv = grad_v + dd^T K
        const T* ki = k + i * M;
        for (int64_t j = 0; j < M; ++j) grad[j] += di * ki[j];
      }
    }
    std::copy(row_input(r), row_input(r) + M, right);
    step = 1;
  } else {
    std::copy(grad_v, grad_v + M, grad.begin());
  }
  // (column update r, row update r) pairs, last first; grad = dL/dv of r
  for (; step < n; step += 2) {
    const int64_t r = (n - 1 - step) / 2;
    const T* v_out = V + r * col_step;
    const T* v_den = D + r * col_step;
    const T* u_out = U + r * row_step;  // also the column update's input
    const T* u_den = S + r * row_step;
    for (int64_t j = 0; j < M; ++j)
      dd[j] = v_den[j] <= tiny ? T(0) : -grad[j] * v_out[j] / v_den[j];
    std::copy(dd.begin(), dd.end(), right + step * M);
    std::copy(row_input(r), row_input(r) + M, right + (step + 1) * M);
    const bool more = step + 2 < n;  // dL/dv of column update r - 1
    std::fill(grad.begin(), grad.end(), T(0));
    for (int64_t i = 0; i < N; ++i) {
      const T* ki = k + i * M;
      T gu = step == 0 ? grad_u[i] : T(0);
      T dot = 0;
      for (int64_t j = 0; j < M; ++j) dot += ki[j] * dd[j];
      gu += dot;  // dL/du_i = (K dd)_i (+ grad_u at the last update)
      const T di = u_den[i] <= tiny ? T(0) : -gu * u_out[i] / u_den[i];
      left[i * n + step] = u_out[i];
      left[i * n + step + 1] = di;
      if (more)
        for (int64_t j = 0; j < M; ++j) grad[j] += di * ki[j];
    }
  }
}

}  // namespace mmeffattn
