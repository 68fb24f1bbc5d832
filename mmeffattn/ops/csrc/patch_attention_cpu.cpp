// Self-attention inside non-overlapping b x b patches (SASA's attention
// stem), fused on CPU: logits q.k + q.r (relative row/col embeddings),
// softmax, weighted sum, written straight into image layout.
//
// Layout: q, k, v: (B, n, C, P) contiguous, n = nH * nW patches (row-major),
// P = b * b positions (row-major), C = heads * d; out: (B, C, nH*b, nW*b);
// rel_row, rel_col: (2b - 1, d/2), index = key offset - query offset + b - 1.
// Backward recomputes the weights (nothing saved but the inputs). One task
// per (batch, patch row) through at::parallel_for (OpenMP).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

struct PatchGeometry {
  int64_t B, nh, nw, C, heads, d, half, b, P, R;
  PatchGeometry(const at::Tensor& q, int64_t heads_, int64_t nh_, int64_t nw_,
                int64_t b_)
      : B(q.size(0)), nh(nh_), nw(nw_), C(q.size(2)), heads(heads_),
        d(q.size(2) / heads_), half(q.size(2) / heads_ / 2), b(b_),
        P(b_ * b_), R(2 * b_ - 1) {}
};

// Everything below is in "transposed" layout, [key s][query p], so that
// the inner loops run over the P queries of a patch (contiguous).

// Weights PT[s][p] of one (patch, head); q, k: d rows of P positions.
// rowdot/coldot: (R, P) scratch.
template <typename T>
void patch_weights(const T* q, const T* k, const T* rr, const T* rc,
                   const PatchGeometry& g, T* PT, T* rowdot, T* coldot,
                   T* mx, T* sum) {
  const int64_t P = g.P, R = g.R, b = g.b;
  for (int64_t t = 0; t < R * P; ++t) rowdot[t] = coldot[t] = 0;
  for (int64_t t = 0; t < R; ++t)
    for (int64_t c = 0; c < g.half; ++c) {
      const T er = rr[t * g.half + c], ec = rc[t * g.half + c];
      const T* qr = q + c * P;
      const T* qc = q + (g.half + c) * P;
      T* dr = rowdot + t * P;
      T* dc = coldot + t * P;
      for (int64_t p = 0; p < P; ++p) {
        dr[p] += er * qr[p];
        dc[p] += ec * qc[p];
      }
    }
  for (int64_t s = 0; s < P; ++s) {
    T* a = PT + s * P;
    // relative logits: for query row py, the row offset is one value
    const int64_t sy = s / b, sx = s % b;
    for (int64_t py = 0; py < b; ++py) {
      const T* dr = rowdot + (sy - py + b - 1) * P + py * b;
      const T* dc = coldot + py * b;
      for (int64_t px = 0; px < b; ++px)
        a[py * b + px] = dr[px] + dc[(sx - px + b - 1) * P + px];
    }
    for (int64_t c = 0; c < g.d; ++c) {
      const T kc = k[c * P + s];
      const T* qc = q + c * P;
      for (int64_t p = 0; p < P; ++p) a[p] += kc * qc[p];
    }
  }
  for (int64_t p = 0; p < P; ++p) mx[p] = PT[p];
  for (int64_t s = 1; s < P; ++s)
    for (int64_t p = 0; p < P; ++p) mx[p] = std::max(mx[p], PT[s * P + p]);
  for (int64_t p = 0; p < P; ++p) sum[p] = 0;
  for (int64_t s = 0; s < P; ++s)
    for (int64_t p = 0; p < P; ++p) {
      T& a = PT[s * P + p];
      a = std::exp(a - mx[p]);
      sum[p] += a;
    }
  for (int64_t p = 0; p < P; ++p) sum[p] = T(1) / sum[p];
  for (int64_t s = 0; s < P; ++s)
    for (int64_t p = 0; p < P; ++p) PT[s * P + p] *= sum[p];
}

template <typename T>
struct PatchScratch {
  std::vector<T> PT, dLT, rowdot, coldot, mx, sum, rows;
  explicit PatchScratch(const PatchGeometry& g)
      : PT(g.P * g.P), dLT(g.P * g.P), rowdot(g.R * g.P),
        coldot(g.R * g.P), mx(g.P), sum(g.P), rows(g.d * g.P) {}
};

// rows (d, P) <-> the patch's pixels of channels c0.. in a (C, H, W) image
template <typename T>
void scatter_rows(const T* rows, T* img, const PatchGeometry& g, int64_t d,
                  int64_t W, int64_t HW) {
  for (int64_t c = 0; c < d; ++c)
    for (int64_t py = 0; py < g.b; ++py)
      std::memcpy(img + c * HW + py * W, rows + c * g.P + py * g.b,
                  g.b * sizeof(T));
}

template <typename T>
void gather_rows(const T* img, T* rows, const PatchGeometry& g, int64_t d,
                 int64_t W, int64_t HW) {
  for (int64_t c = 0; c < d; ++c)
    for (int64_t py = 0; py < g.b; ++py)
      std::memcpy(rows + c * g.P + py * g.b, img + c * HW + py * W,
                  g.b * sizeof(T));
}

template <typename T>
void forward_kernel(const T* q, const T* k, const T* v, const T* rr,
                    const T* rc, T* out, const PatchGeometry& g) {
  const int64_t H = g.nh * g.b, W = g.nw * g.b, P = g.P, HW = H * W;
  at::parallel_for(0, g.B * g.nh, 1, [&](int64_t begin, int64_t end) {
    PatchScratch<T> sc(g);
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t bb = bi / g.nh, ph = bi % g.nh;
      for (int64_t pw = 0; pw < g.nw; ++pw) {
        const int64_t patch = (bb * g.nh + ph) * g.nw + pw;
        for (int64_t h = 0; h < g.heads; ++h) {
          const int64_t off = (patch * g.C + h * g.d) * P;
          patch_weights(q + off, k + off, rr, rc, g, sc.PT.data(),
                        sc.rowdot.data(), sc.coldot.data(), sc.mx.data(),
                        sc.sum.data());
          // out[c][p] = sum_s v[c][s] PT[s][p]
          for (int64_t c = 0; c < g.d; ++c) {
            T* o = sc.rows.data() + c * P;
            const T* vc = v + off + c * P;
            for (int64_t p = 0; p < P; ++p) o[p] = 0;
            for (int64_t s = 0; s < P; ++s) {
              const T vs = vc[s];
              const T* a = sc.PT.data() + s * P;
              for (int64_t p = 0; p < P; ++p) o[p] += vs * a[p];
            }
          }
          scatter_rows(sc.rows.data(),
                       out + (bb * g.C + h * g.d) * HW + ph * g.b * W +
                           pw * g.b,
                       g, g.d, W, HW);
        }
      }
    }
  });
}

template <typename T>
void backward_kernel(const T* gout, const T* q, const T* k, const T* v,
                     const T* rr, const T* rc, T* gq, T* gk, T* gv, T* grr,
                     T* grc, const PatchGeometry& g) {
  const int64_t H = g.nh * g.b, W = g.nw * g.b, P = g.P, R = g.R,
                HW = H * W, b = g.b;
  const int nthreads = at::get_num_threads();
  std::vector<std::vector<T>> rel_acc(nthreads,
                                      std::vector<T>(2 * R * g.half, 0));
  at::parallel_for(0, g.B * g.nh, 1, [&](int64_t begin, int64_t end) {
    std::vector<T>& acc = rel_acc[at::get_thread_num()];
    PatchScratch<T> sc(g);
    std::vector<T> grow(R * P), gcol(R * P);
    T* go = sc.rows.data();
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t bb = bi / g.nh, ph = bi % g.nh;
      for (int64_t pw = 0; pw < g.nw; ++pw) {
        const int64_t patch = (bb * g.nh + ph) * g.nw + pw;
        for (int64_t h = 0; h < g.heads; ++h) {
          const int64_t off = (patch * g.C + h * g.d) * P;
          const T* qh = q + off;
          const T* kh = k + off;
          const T* vh = v + off;
          T* PT = sc.PT.data();
          T* dLT = sc.dLT.data();
          patch_weights(qh, kh, rr, rc, g, PT, sc.rowdot.data(),
                        sc.coldot.data(), sc.mx.data(), sc.sum.data());
          gather_rows(gout + (bb * g.C + h * g.d) * HW + ph * b * W +
                          pw * b,
                      go, g, g.d, W, HW);
          // dv[c][s] = sum_p PT[s][p] go[c][p];
          // dLT[s][p] = sum_c v[c][s] go[c][p]
          for (int64_t s = 0; s < P; ++s) {
            const T* a = PT + s * P;
            T* dl = dLT + s * P;
            for (int64_t p = 0; p < P; ++p) dl[p] = 0;
            for (int64_t c = 0; c < g.d; ++c) {
              const T* gc = go + c * P;
              const T vs = vh[c * P + s];
              T dv = 0;
              for (int64_t p = 0; p < P; ++p) {
                dv += a[p] * gc[p];
                dl[p] += vs * gc[p];
              }
              gv[off + c * P + s] = dv;
            }
          }
          // softmax backward, vectorised over queries
          T* sm = sc.sum.data();
          for (int64_t p = 0; p < P; ++p) sm[p] = 0;
          for (int64_t s = 0; s < P; ++s)
            for (int64_t p = 0; p < P; ++p) sm[p] += PT[s * P + p] *
                                                     dLT[s * P + p];
          for (int64_t s = 0; s < P; ++s)
            for (int64_t p = 0; p < P; ++p)
              dLT[s * P + p] = PT[s * P + p] * (dLT[s * P + p] - sm[p]);
          // per-offset sums for the relative embeddings
          std::fill(grow.begin(), grow.end(), T(0));
          std::fill(gcol.begin(), gcol.end(), T(0));
          for (int64_t s = 0; s < P; ++s) {
            const int64_t sy = s / b, sx = s % b;
            const T* dl = dLT + s * P;
            for (int64_t py = 0; py < b; ++py) {
              T* gr = grow.data() + (sy - py + b - 1) * P + py * b;
              for (int64_t px = 0; px < b; ++px) {
                gr[px] += dl[py * b + px];
                gcol[(sx - px + b - 1) * P + py * b + px] += dl[py * b + px];
              }
            }
          }
          // dq[c][p] = sum_s dLT[s][p] k[c][s] + relative terms;
          // dk[c][s] = sum_p dLT[s][p] q[c][p]
          for (int64_t c = 0; c < g.d; ++c) {
            const T* qc = qh + c * P;
            T* dq = gq + off + c * P;
            for (int64_t p = 0; p < P; ++p) dq[p] = 0;
            for (int64_t s = 0; s < P; ++s) {
              const T ks = kh[c * P + s];
              const T* dl = dLT + s * P;
              T dk = 0;
              for (int64_t p = 0; p < P; ++p) {
                dq[p] += ks * dl[p];
                dk += dl[p] * qc[p];
              }
              gk[off + c * P + s] = dk;
            }
            const bool row_half = c < g.half;
            const T* emb = row_half ? rr : rc;
            const int64_t ce = row_half ? c : c - g.half;
            const T* gsum = row_half ? grow.data() : gcol.data();
            T* eacc = acc.data() + (row_half ? 0 : R * g.half);
            for (int64_t t = 0; t < R; ++t) {
              const T e = emb[t * g.half + ce];
              const T* gt = gsum + t * P;
              T de = 0;
              for (int64_t p = 0; p < P; ++p) {
                dq[p] += e * gt[p];
                de += gt[p] * qc[p];
              }
              eacc[t * g.half + ce] += de;
            }
          }
        }
      }
    }
  });
  for (const auto& acc : rel_acc)
    for (int64_t i = 0; i < R * g.half; ++i) {
      grr[i] += acc[i];
      grc[i] += acc[R * g.half + i];
    }
}

void check(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
           int64_t heads, int64_t nh, int64_t nw, int64_t b) {
  TORCH_CHECK(q.dim() == 4 && q.is_contiguous() && k.is_contiguous() &&
                  v.is_contiguous() && k.sizes() == q.sizes() &&
                  v.sizes() == q.sizes(),
              "q, k, v must be contiguous (B, n, C, P) of one shape");
  TORCH_CHECK(q.size(1) == nh * nw && q.size(3) == b * b &&
                  q.size(2) % (2 * heads) == 0,
              "q must be (B, nH*nW, C, b*b) with C divisible by 2*heads");
}

}  // namespace

at::Tensor patch_attention_forward(at::Tensor q, at::Tensor k, at::Tensor v,
                                   at::Tensor rel_row, at::Tensor rel_col,
                                   int64_t heads, int64_t nh, int64_t nw,
                                   int64_t b) {
  check(q, k, v, heads, nh, nw, b);
  const PatchGeometry g(q, heads, nh, nw, b);
  auto out = at::empty({g.B, g.C, nh * b, nw * b}, q.options());
  auto rr = rel_row.contiguous(), rc = rel_col.contiguous();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "patch_attention_fwd", [&] {
    forward_kernel<scalar_t>(q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                             v.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(),
                             rc.data_ptr<scalar_t>(),
                             out.data_ptr<scalar_t>(), g);
  });
  return out;
}

std::vector<at::Tensor> patch_attention_backward(
    at::Tensor gout, at::Tensor q, at::Tensor k, at::Tensor v,
    at::Tensor rel_row, at::Tensor rel_col, int64_t heads, int64_t nh,
    int64_t nw, int64_t b) {
  check(q, k, v, heads, nh, nw, b);
  gout = gout.contiguous();
  const PatchGeometry g(q, heads, nh, nw, b);
  auto gq = at::empty_like(q), gk = at::empty_like(k), gv = at::empty_like(v);
  auto rr = rel_row.contiguous(), rc = rel_col.contiguous();
  auto grr = at::zeros_like(rr), grc = at::zeros_like(rc);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "patch_attention_bwd", [&] {
    backward_kernel<scalar_t>(
        gout.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(),
        k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
        rr.data_ptr<scalar_t>(), rc.data_ptr<scalar_t>(),
        gq.data_ptr<scalar_t>(), gk.data_ptr<scalar_t>(),
        gv.data_ptr<scalar_t>(), grr.data_ptr<scalar_t>(),
        grc.data_ptr<scalar_t>(), g);
  });
  return {gq, gk, gv, grr, grc};
}
