// Sinkhorn's scaling iterations and their reverse pass on CPU, one Gibbs
// kernel at a time (one task per (batch, head) matrix, OpenMP through
// at::parallel_for): the matrix-vector products of every update run as fused
// loops over a kernel that stays in cache, instead of one batched GEMM with a
// single column (and its elementwise divides and clamps) per update.
//
// Schedule (ops/sinkhorn.py's _alternate): updates alternate row, column,
// row, ... starting with a row update from v = 1; n_updates = 2L (ending with
// a column update) or 2L + 1 (ending with a row update).
//   row r:    s = max(K v, tiny),   u = a / s   (v: column output r - 1)
//   column c: t = max(u^T K, tiny), v = b / t   (u: row output c)
// Kept for backward: every output and denominator (N or m values).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace {

template <typename T>
void sinkhorn_forward(const T* K, const T* a, const T* b, int64_t G,
                      int64_t N, int64_t M, int n_updates, T tiny, T* U,
                      T* S, T* V, T* D) {
  at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> ones(M, T(1)), t(M);
    for (int64_t g = begin; g < end; ++g) {
      const T* k = K + g * N * M;
      const T* v_in = ones.data();
      const T* u_in = nullptr;
      for (int up = 0; up < n_updates; ++up) {
        const int64_t r = up / 2;
        if (up % 2 == 0) {  // row update
          T* u = U + (r * G + g) * N;
          T* s = S + (r * G + g) * N;
          for (int64_t i = 0; i < N; ++i) {
            const T* ki = k + i * M;
            T dot = 0;
            for (int64_t j = 0; j < M; ++j) dot += ki[j] * v_in[j];
            dot = std::max(dot, tiny);
            s[i] = dot;
            u[i] = a[g * N + i] / dot;
          }
          u_in = u;
        } else {  // column update
          std::fill(t.begin(), t.end(), T(0));
          for (int64_t i = 0; i < N; ++i) {
            const T ui = u_in[i];
            const T* ki = k + i * M;
            for (int64_t j = 0; j < M; ++j) t[j] += ui * ki[j];
          }
          T* v = V + (r * G + g) * M;
          T* d = D + (r * G + g) * M;
          for (int64_t j = 0; j < M; ++j) {
            d[j] = std::max(t[j], tiny);
            v[j] = b[g * M + j] / d[j];
          }
          v_in = v;
        }
      }
    }
  });
}

// Reverse pass: the rank-1 terms dL/dK += left (N) x right (M) of every
// update, written as column `step` of lefts (G, N, n) and row `step` of
// rights (G, n, M), step 0 being the last update. grad_u / grad_v: dL/du,
// dL/dv of the final scalings.
template <typename T>
void sinkhorn_backward(const T* K, const T* U, const T* S, const T* V,
                       const T* D, const T* grad_u, const T* grad_v,
                       int64_t G, int64_t N, int64_t M, int n_updates,
                       T tiny, T* lefts, T* rights) {
  const int n = n_updates;
  at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> ones(M, T(1)), grad(std::max(N, M)), dd(std::max(N, M));
    for (int64_t g = begin; g < end; ++g) {
      const T* k = K + g * N * M;
      T* left = lefts + g * N * n;
      T* right = rights + g * n * M;
      const bool last_col = n % 2 == 0;
      if (last_col)
        std::copy(grad_v + g * M, grad_v + (g + 1) * M, grad.begin());
      else
        std::copy(grad_u + g * N, grad_u + (g + 1) * N, grad.begin());
      for (int step = 0; step < n; ++step) {
        const int up = n - 1 - step;
        const int64_t r = up / 2;
        if (up % 2 == 1) {  // column: v = b / t, t = u^T K, u = U[r]
          const T* out = V + (r * G + g) * M;
          const T* den = D + (r * G + g) * M;
          const T* x_in = U + (r * G + g) * N;
          for (int64_t j = 0; j < M; ++j)
            dd[j] = den[j] <= tiny ? T(0) : -grad[j] * out[j] / den[j];
          for (int64_t i = 0; i < N; ++i) left[i * n + step] = x_in[i];
          for (int64_t j = 0; j < M; ++j) right[step * M + j] = dd[j];
          if (step == n - 1) break;
          for (int64_t i = 0; i < N; ++i) {  // dL/du = K dd
            const T* ki = k + i * M;
            T dot = 0;
            for (int64_t j = 0; j < M; ++j) dot += ki[j] * dd[j];
            grad[i] = dot + (step == 0 ? grad_u[g * N + i] : T(0));
          }
        } else {  // row: u = a / s, s = K v, v = V[r - 1] or 1
          const T* out = U + (r * G + g) * N;
          const T* den = S + (r * G + g) * N;
          const T* x_in = r > 0 ? V + ((r - 1) * G + g) * M : ones.data();
          for (int64_t i = 0; i < N; ++i)
            dd[i] = den[i] <= tiny ? T(0) : -grad[i] * out[i] / den[i];
          for (int64_t i = 0; i < N; ++i) left[i * n + step] = dd[i];
          for (int64_t j = 0; j < M; ++j) right[step * M + j] = x_in[j];
          if (step == n - 1) break;
          std::vector<T>& gv = grad;  // dL/dv = dd^T K
          for (int64_t j = 0; j < M; ++j)
            gv[j] = step == 0 ? grad_v[g * M + j] : T(0);
          for (int64_t i = 0; i < N; ++i) {
            const T di = dd[i];
            const T* ki = k + i * M;
            for (int64_t j = 0; j < M; ++j) gv[j] += di * ki[j];
          }
        }
      }
    }
  });
}

}  // namespace

std::vector<at::Tensor> sinkhorn_iterates_cpu(at::Tensor kern, at::Tensor a,
                                              at::Tensor b, int64_t n_updates,
                                              double tiny) {
  TORCH_CHECK(kern.dim() == 3 && a.dim() == 2 && b.dim() == 2,
              "kern (G, N, m), a (G, N), b (G, m)");
  kern = kern.contiguous();
  a = a.contiguous();
  b = b.contiguous();
  const int64_t G = kern.size(0), N = kern.size(1), M = kern.size(2);
  const int64_t nr = (n_updates + 1) / 2, nc = n_updates / 2;
  auto U = at::empty({nr, G, N}, kern.options());
  auto S = at::empty_like(U);
  auto V = at::empty({nc, G, M}, kern.options());
  auto D = at::empty_like(V);
  AT_DISPATCH_FLOATING_TYPES(kern.scalar_type(), "sinkhorn_iterates", [&] {
    sinkhorn_forward<scalar_t>(
        kern.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(),
        b.data_ptr<scalar_t>(), G, N, M, static_cast<int>(n_updates),
        static_cast<scalar_t>(tiny), U.data_ptr<scalar_t>(),
        S.data_ptr<scalar_t>(), V.data_ptr<scalar_t>(),
        D.data_ptr<scalar_t>());
  });
  return {U, S, V, D};
}

std::vector<at::Tensor> sinkhorn_iterates_backward_cpu(
    at::Tensor kern, at::Tensor U, at::Tensor S, at::Tensor V, at::Tensor D,
    at::Tensor grad_u, at::Tensor grad_v, double tiny) {
  kern = kern.contiguous();
  grad_u = grad_u.contiguous();
  grad_v = grad_v.contiguous();
  const int64_t G = kern.size(0), N = kern.size(1), M = kern.size(2);
  const int64_t n = U.size(0) + V.size(0);
  auto lefts = at::empty({G, N, n}, kern.options());
  auto rights = at::empty({G, n, M}, kern.options());
  AT_DISPATCH_FLOATING_TYPES(kern.scalar_type(), "sinkhorn_backward", [&] {
    sinkhorn_backward<scalar_t>(
        kern.data_ptr<scalar_t>(), U.contiguous().data_ptr<scalar_t>(),
        S.contiguous().data_ptr<scalar_t>(),
        V.contiguous().data_ptr<scalar_t>(),
        D.contiguous().data_ptr<scalar_t>(), grad_u.data_ptr<scalar_t>(),
        grad_v.data_ptr<scalar_t>(), G, N, M, static_cast<int>(n),
        static_cast<scalar_t>(tiny), lefts.data_ptr<scalar_t>(),
        rights.data_ptr<scalar_t>());
  });
  return {lefts, rights};
}
