// Sinkhorn's scaling iterations and their reverse pass on CPU for a batch of
// Gibbs kernels (G, N, m): one task per kernel (OpenMP through
// at::parallel_for), each running sinkhorn_group.h's fused loops.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <vector>

#include "sinkhorn_group.h"

namespace {

// Iterate r of every group: U (nr, G, N), S likewise, V / D (nc, G, M).
template <typename T>
void sinkhorn_forward(const T* K, const T* a, const T* b, int64_t G,
                      int64_t N, int64_t M, int n_updates, T tiny, T* U,
                      T* S, T* V, T* D) {
  at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g)
      mmeffattn::sinkhorn_group_forward(K + g * N * M, a + g * N, b + g * M,
                                        N, M, n_updates, tiny, U + g * N,
                                        S + g * N, G * N, V + g * M,
                                        D + g * M, G * M);
  });
}

template <typename T>
void sinkhorn_backward(const T* K, const T* U, const T* S, const T* V,
                       const T* D, const T* grad_u, const T* grad_v,
                       int64_t G, int64_t N, int64_t M, int n_updates,
                       T tiny, T* lefts, T* rights) {
  at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g)
      mmeffattn::sinkhorn_group_backward(
          K + g * N * M, U + g * N, S + g * N, G * N, V + g * M, D + g * M,
          G * M, grad_u + g * N, grad_v + g * M, N, M, n_updates, tiny,
          lefts + g * N * n_updates, rights + g * n_updates * M);
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
