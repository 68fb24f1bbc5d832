// SeT attention with Nystrom features on CPU, one (batch, head) group per
// task (OpenMP through at::parallel_for). A group's side (keys, then
// queries) runs by row tiles of kTile tokens: normalised tokens, features,
// log kernel and Gibbs kernel of a tile are made and used while in L1 / L2,
// and only what Sinkhorn's passes need whole stays N rows long (the Gibbs
// kernel, and for backward the features and the plan gradient). q / k / v
// are read from the qkv projection as laid out, out / dqkv written in place.
// Nothing N x m is kept between forward and backward: backward recomputes
// each side's kernel.
//
// Per group (ops/set/transport.py has the same maths in PyTorch ops):
//   log = exp((x z^T / |x| - 1) / sigma^2) W + c_h pos,  K = exp(log - rowmax)
// (pos (N, m) shared by the heads or per head, c_h a per-head scale: SeT's
// positional penalty is -|p_i - p_j|^2 / (2 sigma_h^2), so no (h, N, m)
// tensor nor its gradient is formed)
//   keys:    (u_k, v_k) = Sinkhorn(K_k), 2L updates (columns exact)
//            Z = m v_k^T * (K_k^T (u_k * V))                       (m, d)
//   queries: (u_q, v_q) = Sinkhorn(K_q), 2L + 1 updates (rows exact)
//            out = n u_q * (K_q (v_q^T * Z))                       (N, d)
// GEMMs: blas_gemm.h (the BLAS torch links, single-threaded inside the
// parallel region) on row tiles and strided rows.
// Measured: whole-group N x a / N x d temporaries (one ATen GEMM per step)
// made time grow 5x per 4x tokens (3136 -> 12544): their passes left L2.
// Tried and measured slower: tiles that recompute features in a second
// pass. Sinkhorn's row and column updates share passes over K
// (sinkhorn_group.h), which pays off only with the row tiles.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "blas_gemm.h"
#include "sinkhorn_group.h"

namespace {

constexpr double kTiny = 1e-30;
constexpr int64_t kTile = 256;  // rows of a tile: its buffers ~200 KiB

struct Problem {
  int64_t B, N, h, d, a, m;
  int n_rows_last, n_cols_last;  // queries: 2L + 1 updates, keys: 2L
  double sigma;
  const bool* mask;  // (B, N) or null
  int64_t groups() const { return B * h; }
  int64_t qkv_stride() const { return 3 * h * d; }  // (B, N, 3, h, d) rows
};

// The iterates of one side, laid out (n_iterates, G, N or m).
struct Trace {
  at::Tensor U, S, V, D;
  Trace(int n_updates, int64_t G, int64_t N, int64_t M,
        const at::TensorOptions& opt)
      : U(at::empty({(n_updates + 1) / 2, G, N}, opt)),
        S(at::empty_like(U)),
        V(at::empty({n_updates / 2, G, M}, opt)),
        D(at::empty_like(V)) {}
  Trace(at::Tensor u, at::Tensor s, at::Tensor v, at::Tensor d)
      : U(u.contiguous()), S(s.contiguous()), V(v.contiguous()),
        D(d.contiguous()) {}
  int n_updates() const { return U.size(0) + V.size(0); }
  template <typename T>
  const T* u(int64_t g) const {  // the final scalings of group g
    return U[-1][g].data_ptr<T>();
  }
  template <typename T>
  const T* v(int64_t g) const {
    return V[-1][g].data_ptr<T>();
  }
};

// One thread's buffers. Whole-group (N rows): the Gibbs kernel of the side
// being worked on (Sinkhorn needs it whole), and for backward its features,
// the plan gradient and the inverse token norms. Per row tile (kTile rows,
// in L2): the normalised tokens, feature gradients and N x d temporaries.
template <typename T>
struct Scratch {
  std::unique_ptr<T[]> kern, feat, plan, inv, left, right, marg_a, marg_b,
      grad_u, grad_v, md, md2, xh, tile_a, tile_d;
  Scratch(const Problem& p, int n_max, bool backward)
      : kern(new T[p.N * p.m]),
        feat(new T[(backward ? p.N : kTile) * p.a]),
        plan(backward ? new T[p.N * p.m] : nullptr),
        inv(new T[p.N]),
        left(backward ? new T[p.N * n_max] : nullptr),
        right(backward ? new T[n_max * p.m] : nullptr),
        marg_a(new T[p.N]),
        marg_b(new T[p.m]),
        grad_u(new T[p.N]),
        grad_v(new T[p.m]),
        md(new T[p.m * p.d]),
        md2(new T[p.m * p.d]),
        xh(new T[kTile * p.d]),
        tile_a(new T[kTile * p.a]),
        tile_d(new T[kTile * p.d]) {
    std::fill(marg_b.get(), marg_b.get() + p.m, T(1) / T(p.m));
  }
};

// The pointers of one (batch, head) group: q / k / v rows (and their
// gradients') are strided by 3 h d, out / grad_out rows by h d.
template <typename T>
struct Group {
  int64_t b, head;
  const T *q, *k, *v, *z, *w, *pos;  // z (a, d), w (a, m), pos (N, m) or null
  T pos_scale = 1;
  const bool* mask_row;
  Group(const Problem& p, const at::Tensor& qkv, const at::Tensor& z_all,
        const at::Tensor& w_all, const at::Tensor& pos_all,
        const at::Tensor& scale_all, int64_t g)
      : b(g / p.h), head(g % p.h) {
    q = qkv_row(qkv.data_ptr<T>(), p, 0);
    k = qkv_row(qkv.data_ptr<T>(), p, 1);
    v = qkv_row(qkv.data_ptr<T>(), p, 2);
    z = z_all.data_ptr<T>() + head * p.a * p.d;
    w = w_all.data_ptr<T>() + head * p.a * p.m;
    pos = nullptr;
    if (pos_all.defined())
      pos = pos_all.data_ptr<T>() +
            (pos_all.size(0) == 1 ? 0 : head) * p.N * p.m;
    if (scale_all.defined())
      pos_scale = T(scale_all.data_ptr<double>()[head]);
    mask_row = p.mask ? p.mask + b * p.N : nullptr;
  }
  // row 0 of this group in a (B, N, 3, h, d) tensor, slot 0 / 1 / 2
  template <typename U>
  U* qkv_row(U* base, const Problem& p, int slot) const {
    return base + b * p.N * 3 * p.h * p.d + (slot * p.h + head) * p.d;
  }
  // row 0 of this group in a (B, N, h, d) tensor
  template <typename U>
  U* out_row(U* base, const Problem& p) const {
    return base + (b * p.N * p.h + head) * p.d;
  }
};

// Rows [r0, r0 + R) of one side, from its tokens x (strided rows): the
// inverse norms s.inv, the features feat (R x a) and the Gibbs kernel rows
// kern (R x m; rows outside the mask zero):
//   feat = exp((x/|x| z^T - 1) / sigma^2),  kern = exp(log - rowmax),
//   log = feat W + c_h pos.
template <typename T>
void gibbs_tile(const Problem& p, const Group<T>& x, const T* tokens,
                int64_t r0, int64_t R, Scratch<T>& s, T* feat, T* kern) {
  const int64_t ld = p.qkv_stride(), d = p.d, a = p.a, M = p.m;
  T* xh = s.xh.get();
  for (int64_t i = 0; i < R; ++i) {
    const T* xi = tokens + (r0 + i) * ld;
    T sq = 0;
    for (int64_t j = 0; j < d; ++j) sq += xi[j] * xi[j];
    const T r = T(1) / std::max(std::sqrt(sq), T(1e-12));
    s.inv[r0 + i] = r;
    for (int64_t j = 0; j < d; ++j) xh[i * d + j] = xi[j] * r;
  }
  mmeffattn::gemm<T>(false, true, R, a, d, 1, xh, d, x.z, d, 0, feat, a);
  const T scale = T(1.0 / (p.sigma * p.sigma));
  for (int64_t e = 0; e < R * a; ++e)
    feat[e] = std::exp((feat[e] - T(1)) * scale);
  mmeffattn::gemm<T>(false, false, R, M, a, 1, feat, a, x.w, M, 0, kern, M);
  for (int64_t i = 0; i < R; ++i) {
    T* ki = kern + i * M;
    if (x.mask_row && !x.mask_row[r0 + i]) {
      std::fill(ki, ki + M, T(0));
      continue;
    }
    if (x.pos) {
      const T* pi = x.pos + (r0 + i) * M;
      for (int64_t l = 0; l < M; ++l) ki[l] += x.pos_scale * pi[l];
    }
    T mx = ki[0];
    for (int64_t l = 1; l < M; ++l) mx = std::max(mx, ki[l]);
    for (int64_t l = 0; l < M; ++l) ki[l] = std::exp(ki[l] - mx);
  }
}

// The whole side's Gibbs kernel into s.kern (forward: each tile's features
// are used and dropped; backward keeps them, gibbs_tile per tile).
template <typename T>
void gibbs_kernel(const Problem& p, const Group<T>& x, const T* tokens,
                  Scratch<T>& s) {
  for (int64_t r0 = 0; r0 < p.N; r0 += kTile)
    gibbs_tile<T>(p, x, tokens, r0, std::min(kTile, p.N - r0), s,
                  s.feat.get(), s.kern.get() + r0 * p.m);
}

// Marginal a (1/n on valid rows) into s.marg_a; returns n_valid.
template <typename T>
T row_marginal(const Problem& p, const bool* mask_row, Scratch<T>& s) {
  T* a = s.marg_a.get();
  if (!mask_row) {
    std::fill(a, a + p.N, T(1) / T(p.N));
    return T(p.N);
  }
  int64_t count = 0;
  for (int64_t i = 0; i < p.N; ++i) count += mask_row[i];
  const T n_valid = T(std::max<int64_t>(count, 1));
  for (int64_t i = 0; i < p.N; ++i) a[i] = mask_row[i] ? T(1) / n_valid : 0;
  return n_valid;
}

template <typename T>
void sinkhorn(const Problem& p, const Scratch<T>& s, Trace& t, int64_t g) {
  const int64_t G = p.groups();
  mmeffattn::sinkhorn_group_forward(
      s.kern.get(), s.marg_a.get(), s.marg_b.get(), p.N, p.m, t.n_updates(),
      T(kTiny), t.U.data_ptr<T>() + g * p.N, t.S.data_ptr<T>() + g * p.N,
      G * p.N, t.V.data_ptr<T>() + g * p.m, t.D.data_ptr<T>() + g * p.m,
      G * p.m);
}

// dst row i = coef[i] * factor * src row i (rows x d; row strides given)
template <typename T>
void scale_rows(const T* src, int64_t src_stride, const T* coef, T factor,
                T* dst, int64_t dst_stride, int64_t rows, int64_t d) {
  for (int64_t i = 0; i < rows; ++i) {
    const T c = (coef ? coef[i] : T(1)) * factor;
    const T* si = src + i * src_stride;
    T* di = dst + i * dst_stride;
    for (int64_t j = 0; j < d; ++j) di[j] = c * si[j];
  }
}

template <typename T>
void forward_group(const Problem& p, const Group<T>& x, Trace& tq,
                   Trace& tk, T* out, T* gather, int64_t g, Scratch<T>& s) {
  const int64_t ld = p.qkv_stride(), M = p.m, d = p.d;
  const T n_valid = row_marginal<T>(p, x.mask_row, s);
  // keys: Z = m v_k^T * (K_k^T (u_k * V)), K_k read once more by row tiles
  gibbs_kernel<T>(p, x, x.k, s);
  sinkhorn<T>(p, s, tk, g);
  const T* u = tk.u<T>(g);
  T* z_g = gather + (x.b * p.h + x.head) * M * d;  // (m, d)
  for (int64_t r0 = 0; r0 < p.N; r0 += kTile) {
    const int64_t R = std::min(kTile, p.N - r0);
    scale_rows<T>(x.v + r0 * ld, ld, u + r0, T(1), s.tile_d.get(), d, R, d);
    mmeffattn::gemm<T>(true, false, M, d, R, 1, s.kern.get() + r0 * M, M,
                       s.tile_d.get(), d, r0 ? 1 : 0, z_g, d);
  }
  scale_rows<T>(z_g, d, tk.v<T>(g), T(M), z_g, d, M, d);
  // queries: out = n u_q * (K_q (v_q^T * Z)), written in place by row tiles
  gibbs_kernel<T>(p, x, x.q, s);
  sinkhorn<T>(p, s, tq, g);
  scale_rows<T>(z_g, d, tq.v<T>(g), T(1), s.md.get(), d, M, d);
  const T* uq = tq.u<T>(g);
  T* o = x.out_row(out, p);
  const int64_t lo = p.h * d;
  for (int64_t r0 = 0; r0 < p.N; r0 += kTile) {
    const int64_t R = std::min(kTile, p.N - r0);
    mmeffattn::gemm<T>(false, false, R, d, M, 1, s.kern.get() + r0 * M, M,
                       s.md.get(), d, 0, o + r0 * lo, lo);
    scale_rows<T>(o + r0 * lo, lo, uq + r0, n_valid, o + r0 * lo, lo, R, d);
  }
}

// Rows [r0, r0 + R) of dL/dT (in s.plan) for T = u K v: dL/du into
// s.grad_u, dL/dv added to s.grad_v, and the plan gradient's direct term
// dL/dT * u v in place (the Sinkhorn terms are added later).
template <typename T>
void direct_term_tile(const Problem& p, const T* u, const T* v, int64_t r0,
                      int64_t R, Scratch<T>& s) {
  const int64_t M = p.m;
  T* gv = s.grad_v.get();
  for (int64_t i = r0; i < r0 + R; ++i) {
    const T* Ki = s.kern.get() + i * M;
    T* Pi = s.plan.get() + i * M;
    T acc = 0;
    for (int64_t l = 0; l < M; ++l) {
      const T pk = Pi[l] * Ki[l];
      acc += pk * v[l];
      gv[l] += u[i] * pk;
      Pi[l] *= u[i] * v[l];
    }
    s.grad_u[i] = acc;
  }
}

// This thread's sums over its groups of the per-head parameter gradients.
template <typename T>
struct Accumulators {
  T *z, *w, *pos, *pos_scale;  // (h, a, d), (h, a, m), (P, N, m), (h)
  int64_t pos_heads;           // P
};

// Rows [r0, r0 + R): the plan gradient's Sinkhorn terms (left x right),
// times K -> dL/dlog; its positional, W and feature gradients; dL/dx of
// the tokens x (strided rows, written at grad_x) and dL/dz added.
template <typename T>
void log_grad_tile(const Problem& p, const Group<T>& x, const T* tokens,
                   int n, int64_t r0, int64_t R, Scratch<T>& s,
                   Accumulators<T>& acc, T* grad_x) {
  const int64_t M = p.m, a = p.a, d = p.d, ld = p.qkv_stride();
  T* P = s.plan.get() + r0 * M;
  const T* K = s.kern.get() + r0 * M;
  mmeffattn::gemm<T>(false, false, R, M, n, 1, s.left.get() + r0 * n, n,
                     s.right.get(), M, 1, P, M);
  for (int64_t e = 0; e < R * M; ++e) P[e] *= K[e];
  if (acc.pos) {
    T* gp = acc.pos + ((acc.pos_heads == 1 ? 0 : x.head) * p.N + r0) * M;
    for (int64_t e = 0; e < R * M; ++e) gp[e] += x.pos_scale * P[e];
  }
  if (acc.pos_scale) {
    const T* pp = x.pos + r0 * M;
    T dot = 0;
    for (int64_t e = 0; e < R * M; ++e) dot += P[e] * pp[e];
    acc.pos_scale[x.head] += dot;
  }
  const T* f = s.feat.get() + r0 * a;
  T* gf = s.tile_a.get();
  mmeffattn::gemm<T>(false, true, R, a, M, 1, P, M, x.w, M, 0, gf, a);
  mmeffattn::gemm<T>(true, false, a, M, R, 1, f, a, P, M, 1,
                     acc.w + x.head * a * M, M);
  // feat = exp((c - 1) / sigma^2), c = x/|x| z^T -> dL/d(x z^T) / |x|
  const T scale = T(1.0 / (p.sigma * p.sigma));
  for (int64_t i = 0; i < R; ++i) {
    const T c = scale * s.inv[r0 + i];
    for (int64_t j = 0; j < a; ++j) gf[i * a + j] *= f[i * a + j] * c;
  }
  T* nd = s.tile_d.get();
  const T* xt = tokens + r0 * ld;
  mmeffattn::gemm<T>(false, false, R, d, a, 1, gf, a, x.z, d, 0, nd, d);
  mmeffattn::gemm<T>(true, false, a, d, R, 1, gf, a, xt, ld, 1,
                     acc.z + x.head * a * d, d);
  // through x / |x|: dL/dx = nd - (x . nd) x / |x|^2 (|x| clamped at 1e-12:
  // no gradient through it)
  for (int64_t i = 0; i < R; ++i) {
    const T* xi = xt + i * ld;
    const T* ni = nd + i * d;
    const T iv = s.inv[r0 + i];
    T dot = 0;
    for (int64_t j = 0; j < d; ++j) dot += xi[j] * ni[j];
    const T coef = iv >= T(0.5e12) ? T(0) : dot * iv * iv;
    T* gi = grad_x + (r0 + i) * ld;
    for (int64_t j = 0; j < d; ++j) gi[j] = ni[j] - coef * xi[j];
  }
}

// After the row tiles filled s.plan's direct term and s.grad_u / grad_v:
// the reverse Sinkhorn pass, then dL/dlog and everything below it by row
// tiles.
template <typename T>
void side_backward(const Problem& p, const Group<T>& x, const T* tokens,
                   const Trace& t, int64_t g, Scratch<T>& s,
                   Accumulators<T>& acc, T* grad_x) {
  const int64_t N = p.N, M = p.m, G = p.groups();
  const int n = t.n_updates();
  mmeffattn::sinkhorn_group_backward(
      s.kern.get(), t.U.data_ptr<T>() + g * N, t.S.data_ptr<T>() + g * N,
      G * N, t.V.data_ptr<T>() + g * M, t.D.data_ptr<T>() + g * M, G * M,
      s.grad_u.get(), s.grad_v.get(), N, M, n, T(kTiny), s.left.get(),
      s.right.get());
  for (int64_t r0 = 0; r0 < N; r0 += kTile)
    log_grad_tile<T>(p, x, tokens, n, r0, std::min(kTile, N - r0), s, acc,
                     grad_x);
}

template <typename T>
void backward_group(const Problem& p, const Group<T>& x, const Trace& tq,
                    const Trace& tk, const T* gather, const T* grad_out,
                    T* grad_qkv, Accumulators<T>& acc, int64_t g,
                    Scratch<T>& s) {
  const int64_t M = p.m, d = p.d, a = p.a, ld = p.qkv_stride();
  const int64_t lo = p.h * d;
  const T n_valid = row_marginal<T>(p, x.mask_row, s);
  const T* z_g = gather + (x.b * p.h + x.head) * M * d;
  const T* go = x.out_row(grad_out, p);
  T* md = s.md.get();
  // queries: dL/dZ = v_q^T * (K_q^T (n u_q * dL/dout)) (times m in md);
  // dL/dT^q = n dL/dout Z^T
  const T* u = tq.u<T>(g);
  const T* v = tq.v<T>(g);
  std::fill(s.grad_v.get(), s.grad_v.get() + M, T(0));
  for (int64_t r0 = 0; r0 < p.N; r0 += kTile) {
    const int64_t R = std::min(kTile, p.N - r0);
    T* K = s.kern.get() + r0 * M;
    gibbs_tile<T>(p, x, x.q, r0, R, s, s.feat.get() + r0 * a, K);
    scale_rows<T>(go + r0 * lo, lo, u + r0, n_valid, s.tile_d.get(), d, R,
                  d);
    mmeffattn::gemm<T>(true, false, M, d, R, 1, K, M, s.tile_d.get(), d,
                       r0 ? 1 : 0, md, d);
    mmeffattn::gemm<T>(false, true, R, M, d, n_valid, go + r0 * lo, lo, z_g,
                       d, 0, s.plan.get() + r0 * M, M);
    direct_term_tile<T>(p, u, v, r0, R, s);
  }
  scale_rows<T>(md, d, v, T(M), md, d, M, d);
  side_backward<T>(p, x, x.q, tq, g, s, acc, x.qkv_row(grad_qkv, p, 0));
  // keys: dL/dT^k = V (m dL/dZ)^T; dL/dV = u_k * (K_k (v_k^T * m dL/dZ))
  u = tk.u<T>(g);
  v = tk.v<T>(g);
  scale_rows<T>(md, d, v, T(1), s.md2.get(), d, M, d);
  T* grad_v = x.qkv_row(grad_qkv, p, 2);
  std::fill(s.grad_v.get(), s.grad_v.get() + M, T(0));
  for (int64_t r0 = 0; r0 < p.N; r0 += kTile) {
    const int64_t R = std::min(kTile, p.N - r0);
    T* K = s.kern.get() + r0 * M;
    gibbs_tile<T>(p, x, x.k, r0, R, s, s.feat.get() + r0 * a, K);
    mmeffattn::gemm<T>(false, true, R, M, d, 1, x.v + r0 * ld, ld, md, d, 0,
                       s.plan.get() + r0 * M, M);
    T* gv = grad_v + r0 * ld;
    mmeffattn::gemm<T>(false, false, R, d, M, 1, K, M, s.md2.get(), d, 0, gv,
                       ld);
    scale_rows<T>(gv, ld, u + r0, T(1), gv, ld, R, d);
    direct_term_tile<T>(p, u, v, r0, R, s);
  }
  side_backward<T>(p, x, x.k, tk, g, s, acc, x.qkv_row(grad_qkv, p, 1));
}

Problem make_problem(const at::Tensor& qkv, const at::Tensor& z,
                     const at::Tensor& w, const at::Tensor& pos,
                     const at::Tensor& pos_scale, const at::Tensor& mask,
                     double sigma, int n_updates_q) {
  TORCH_CHECK(qkv.dim() == 5 && qkv.size(2) == 3,
              "set_nystrom: qkv must be (B, N, 3, h, d), got ", qkv.sizes());
  Problem p;
  p.B = qkv.size(0);
  p.N = qkv.size(1);
  p.h = qkv.size(3);
  p.d = qkv.size(4);
  TORCH_CHECK(z.dim() == 3 && z.size(0) == p.h && z.size(2) == p.d,
              "set_nystrom: z must be (h, a, d), got ", z.sizes());
  p.a = z.size(1);
  TORCH_CHECK(w.dim() == 3 && w.size(0) == p.h && w.size(1) == p.a,
              "set_nystrom: weight must be (h, a, m), got ", w.sizes());
  p.m = w.size(2);
  TORCH_CHECK(!pos.defined() ||
                  (pos.dim() == 3 && (pos.size(0) == p.h || pos.size(0) == 1) &&
                   pos.size(1) == p.N && pos.size(2) == p.m),
              "set_nystrom: pos_log must be (h or 1, N, m), got ",
              pos.sizes());
  TORCH_CHECK(!pos_scale.defined() || (pos.defined() && pos_scale.dim() == 1 &&
                                       pos_scale.size(0) == p.h),
              "set_nystrom: pos_scale must be (h,) and come with pos_log");
  TORCH_CHECK(!mask.defined() || (mask.scalar_type() == at::kBool &&
                                  mask.dim() == 2 && mask.size(0) == p.B &&
                                  mask.size(1) == p.N),
              "set_nystrom: mask must be bool (B, N)");
  for (const at::Tensor* t : {&z, &w, &pos})
    TORCH_CHECK(!t->defined() || t->scalar_type() == qkv.scalar_type(),
                "set_nystrom: z, weight and pos_log must have qkv's dtype");
  p.n_rows_last = n_updates_q;
  p.n_cols_last = n_updates_q - 1;
  p.sigma = sigma;
  p.mask = mask.defined() ? mask.data_ptr<bool>() : nullptr;
  return p;
}

at::Tensor opt(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

at::Tensor opt_double(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->to(at::kDouble).contiguous() : at::Tensor();
}

}  // namespace

// Returns {out (B, N, h, d), Z (B, h, m, d), the queries' U, S, V, D and
// the keys' U, S, V, D (n_iterates, B * h, N or m)}.
std::vector<at::Tensor> set_nystrom_forward_cpu(
    at::Tensor qkv, at::Tensor z, at::Tensor w, std::optional<at::Tensor> pos_,
    std::optional<at::Tensor> pos_scale_, std::optional<at::Tensor> mask_,
    double sigma, int64_t num_iters) {
  qkv = qkv.contiguous();
  z = z.contiguous();
  w = w.contiguous();
  const at::Tensor pos = opt(pos_), mask = opt(mask_);
  const at::Tensor scale = opt_double(pos_scale_);
  const Problem p = make_problem(qkv, z, w, pos, scale, mask, sigma,
                                 2 * num_iters + 1);
  const auto o = qkv.options();
  auto out = at::empty({p.B, p.N, p.h, p.d}, o);
  auto gather = at::empty({p.B, p.h, p.m, p.d}, o);
  Trace tq(p.n_rows_last, p.groups(), p.N, p.m, o);
  Trace tk(p.n_cols_last, p.groups(), p.N, p.m, o);
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "set_nystrom_forward", [&] {
    at::parallel_for(0, p.groups(), 1, [&](int64_t begin, int64_t end) {
      // worker threads do not inherit grad mode: plain kernels, no autograd
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      Scratch<scalar_t> s(p, p.n_rows_last, false);
      for (int64_t g = begin; g < end; ++g)
        forward_group<scalar_t>(
            p, Group<scalar_t>(p, qkv, z, w, pos, scale, g), tq, tk,
            out.data_ptr<scalar_t>(), gather.data_ptr<scalar_t>(), g, s);
    });
  });
  return {out, gather, tq.U, tq.S, tq.V, tq.D, tk.U, tk.S, tk.V, tk.D};
}

// Returns {dqkv (B, N, 3, h, d), dz (h, a, d), dW (h, a, m), dpos (P, N, m)
// and dpos_scale (h,), each of the last two empty unless asked for}.
std::vector<at::Tensor> set_nystrom_backward_cpu(
    at::Tensor grad_out, at::Tensor qkv, at::Tensor z, at::Tensor w,
    std::optional<at::Tensor> pos_, std::optional<at::Tensor> pos_scale_,
    std::optional<at::Tensor> mask_, double sigma, at::Tensor gather,
    std::vector<at::Tensor> trace, bool need_pos, bool need_scale) {
  grad_out = grad_out.contiguous();
  qkv = qkv.contiguous();
  z = z.contiguous();
  w = w.contiguous();
  gather = gather.contiguous();
  TORCH_CHECK(trace.size() == 8, "set_nystrom: 8 trace tensors expected");
  const at::Tensor pos = opt(pos_), mask = opt(mask_);
  const at::Tensor scale = opt_double(pos_scale_);
  const Trace tq(trace[0], trace[1], trace[2], trace[3]);
  const Trace tk(trace[4], trace[5], trace[6], trace[7]);
  const Problem p = make_problem(qkv, z, w, pos, scale, mask, sigma,
                                 tq.n_updates());
  need_pos = need_pos && pos.defined();
  need_scale = need_scale && scale.defined();
  const auto o = qkv.options();
  auto grad_qkv = at::empty_like(qkv);
  const int64_t threads = at::get_num_threads();
  auto acc_z = at::zeros({threads, p.h, p.a, p.d}, o);
  auto acc_w = at::zeros({threads, p.h, p.a, p.m}, o);
  auto acc_pos = need_pos ? at::zeros({threads, pos.size(0), p.N, p.m}, o)
                          : at::Tensor();
  auto acc_scale = need_scale ? at::zeros({threads, p.h}, o) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "set_nystrom_backward", [&] {
    at::parallel_for(0, p.groups(), 1, [&](int64_t begin, int64_t end) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      const int64_t tid = at::get_thread_num();
      Accumulators<scalar_t> acc{
          acc_z[tid].data_ptr<scalar_t>(), acc_w[tid].data_ptr<scalar_t>(),
          need_pos ? acc_pos[tid].data_ptr<scalar_t>() : nullptr,
          need_scale ? acc_scale[tid].data_ptr<scalar_t>() : nullptr,
          need_pos ? pos.size(0) : 1};
      Scratch<scalar_t> s(p, p.n_rows_last, true);
      for (int64_t g = begin; g < end; ++g)
        backward_group<scalar_t>(
            p, Group<scalar_t>(p, qkv, z, w, pos, scale, g), tq, tk,
            gather.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(),
            grad_qkv.data_ptr<scalar_t>(), acc, g, s);
    });
  });
  return {grad_qkv, acc_z.sum(0), acc_w.sum(0),
          need_pos ? acc_pos.sum(0) : at::Tensor(),
          need_scale ? acc_scale.sum(0) : at::Tensor()};
}
