// Fused SASA local attention on CPU: one pass per pixel over its k x k window.
// Layout: q, k, v, out: (BH, H, W, d) contiguous; rel_row, rel_col: (k, d/2);
// attn (saved for backward): (BH, H, W, k*k). Queries arrive pre-scaled.
// border_mask: positions outside the image are excluded from the softmax;
// otherwise they take part with k = v = 0 (logit q.r).
// Built with -ffast-math for vectorised dot products and exp: the code uses
// no infinities or NaNs (masking goes through explicit 0/1 weights).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t c = 0; c < n; ++c) s += a[c] * b[c];
  return s;
}

template <typename T>
void forward_kernel(const T* q, const T* k, const T* v, const T* rr,
                    const T* rc, T* out, T* attn, int64_t BH, int64_t H,
                    int64_t W, int64_t d, int64_t ks, bool mask) {
  const int64_t r = ks / 2, half = d / 2, kk = ks * ks;
  at::parallel_for(0, BH * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> row(ks), col(ks), logit(kk), valid(kk);
    for (int64_t bhi = begin; bhi < end; ++bhi) {
      const int64_t bh = bhi / H, i = bhi % H;
      const T* kb = k + bh * H * W * d;
      const T* vb = v + bh * H * W * d;
      for (int64_t j = 0; j < W; ++j) {
        const int64_t p = (bhi * W + j);
        const T* qp = q + p * d;
        for (int64_t a = 0; a < ks; ++a) {
          row[a] = dot(qp, rr + a * half, half);
          col[a] = dot(qp + half, rc + a * half, half);
        }
        // Invalid (masked) positions get weight 0 through `valid`, so no
        // infinities are needed and the exp loop vectorises (-ffast-math).
        T mx = 0;
        bool first = true;
        for (int64_t a = 0; a < ks; ++a) {
          const int64_t y = i + a - r;
          for (int64_t b = 0; b < ks; ++b) {
            const int64_t x = j + b - r;
            const int64_t o = a * ks + b;
            const bool inside = y >= 0 && y < H && x >= 0 && x < W;
            T l = row[a] + col[b];
            if (inside) l += dot(qp, kb + (y * W + x) * d, d);
            valid[o] = (inside || !mask) ? T(1) : T(0);
            logit[o] = l;
            if (valid[o] != 0 && (first || l > mx)) {
              mx = l;
              first = false;
            }
          }
        }
        for (int64_t o = 0; o < kk; ++o) {
          logit[o] = std::exp(valid[o] != 0 ? logit[o] - mx : T(-80));
        }
        T sum = 0;
        for (int64_t o = 0; o < kk; ++o) {
          logit[o] *= valid[o];
          sum += logit[o];
        }
        T* ap = attn + p * kk;
        T* op = out + p * d;
        for (int64_t c = 0; c < d; ++c) op[c] = 0;
        for (int64_t a = 0; a < ks; ++a) {
          const int64_t y = i + a - r;
          for (int64_t b = 0; b < ks; ++b) {
            const int64_t x = j + b - r;
            const T w = logit[a * ks + b] / sum;
            ap[a * ks + b] = w;
            if (y >= 0 && y < H && x >= 0 && x < W) {
              const T* vp = vb + (y * W + x) * d;
              for (int64_t c = 0; c < d; ++c) op[c] += w * vp[c];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void backward_kernel(const T* gout, const T* q, const T* k, const T* v,
                     const T* rr, const T* rc, const T* attn, T* gq, T* gk,
                     T* gv, T* grr, T* grc, int64_t BH, int64_t H, int64_t W,
                     int64_t d, int64_t ks) {
  const int64_t r = ks / 2, half = d / 2, kk = ks * ks;
  const int nthreads = at::get_num_threads();
  std::vector<std::vector<T>> rel_acc(nthreads,
                                      std::vector<T>(2 * ks * half, 0));
  // parallel over (batch x head): k/v gradients of one map stay in one thread
  at::parallel_for(0, BH, 1, [&](int64_t begin, int64_t end) {
    std::vector<T>& acc = rel_acc[at::get_thread_num()];
    std::vector<T> dlogit(kk);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t base = bh * H * W * d;
      for (int64_t i = 0; i < H; ++i) {
        for (int64_t j = 0; j < W; ++j) {
          const int64_t p = (bh * H + i) * W + j;
          const T* go = gout + p * d;
          const T* ap = attn + p * kk;
          const T* qp = q + p * d;
          T s = 0;
          for (int64_t a = 0; a < ks; ++a) {
            const int64_t y = i + a - r;
            for (int64_t b = 0; b < ks; ++b) {
              const int64_t x = j + b - r;
              const int64_t o = a * ks + b;
              T da = 0;
              if (y >= 0 && y < H && x >= 0 && x < W) {
                da = dot(go, v + base + (y * W + x) * d, d);
              }
              dlogit[o] = da;
              s += ap[o] * da;
            }
          }
          T* gqp = gq + p * d;
          for (int64_t a = 0; a < ks; ++a) {
            const int64_t y = i + a - r;
            T drow = 0;
            for (int64_t b = 0; b < ks; ++b) {
              const int64_t x = j + b - r;
              const int64_t o = a * ks + b;
              const T g = ap[o] * (dlogit[o] - s);
              drow += g;
              // column relative term
              T* gc = acc.data() + ks * half + b * half;
              const T* rcb = rc + b * half;
              for (int64_t c = 0; c < half; ++c) {
                gc[c] += g * qp[half + c];
                gqp[half + c] += g * rcb[c];
              }
              if (y >= 0 && y < H && x >= 0 && x < W && g != 0) {
                const int64_t n = base + (y * W + x) * d;
                const T* kp = k + n;
                T* gkp = gk + n;
                for (int64_t c = 0; c < d; ++c) {
                  gqp[c] += g * kp[c];
                  gkp[c] += g * qp[c];
                }
              }
              if (y >= 0 && y < H && x >= 0 && x < W) {
                T* gvp = gv + base + (y * W + x) * d;
                const T w = ap[o];
                for (int64_t c = 0; c < d; ++c) gvp[c] += w * go[c];
              }
            }
            // row relative term
            T* gr = acc.data() + a * half;
            const T* rra = rr + a * half;
            for (int64_t c = 0; c < half; ++c) {
              gr[c] += drow * qp[c];
              gqp[c] += drow * rra[c];
            }
          }
        }
      }
    }
  });
  for (const auto& acc : rel_acc) {
    for (int64_t c = 0; c < ks * half; ++c) {
      grr[c] += acc[c];
      grc[c] += acc[ks * half + c];
    }
  }
}

}  // namespace

std::vector<at::Tensor> forward(at::Tensor q, at::Tensor k, at::Tensor v,
                                at::Tensor rel_row, at::Tensor rel_col,
                                int64_t kernel_size, bool mask) {
  TORCH_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous(),
              "q, k, v must be contiguous");
  const int64_t BH = q.size(0), H = q.size(1), W = q.size(2), d = q.size(3);
  auto out = at::empty_like(q);
  auto attn = at::empty({BH, H, W, kernel_size * kernel_size}, q.options());
  auto rr = rel_row.contiguous(), rc = rel_col.contiguous();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "local_attention_fwd", [&] {
    forward_kernel<scalar_t>(q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                             v.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(),
                             rc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                             attn.data_ptr<scalar_t>(), BH, H, W, d,
                             kernel_size, mask);
  });
  return {out, attn};
}

std::vector<at::Tensor> backward(at::Tensor gout, at::Tensor q, at::Tensor k,
                                 at::Tensor v, at::Tensor rel_row,
                                 at::Tensor rel_col, at::Tensor attn,
                                 int64_t kernel_size) {
  gout = gout.contiguous();
  const int64_t BH = q.size(0), H = q.size(1), W = q.size(2), d = q.size(3);
  auto gq = at::zeros_like(q), gk = at::zeros_like(k), gv = at::zeros_like(v);
  auto rr = rel_row.contiguous(), rc = rel_col.contiguous();
  auto grr = at::zeros_like(rr), grc = at::zeros_like(rc);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "local_attention_bwd", [&] {
    backward_kernel<scalar_t>(
        gout.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(),
        k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
        rr.data_ptr<scalar_t>(), rc.data_ptr<scalar_t>(),
        attn.data_ptr<scalar_t>(), gq.data_ptr<scalar_t>(),
        gk.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(),
        grr.data_ptr<scalar_t>(), grc.data_ptr<scalar_t>(), BH, H, W, d,
        kernel_size);
  });
  return {gq, gk, gv, grr, grc};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "SASA local attention forward (CPU)");
  m.def("backward", &backward, "SASA local attention backward (CPU)");
}
