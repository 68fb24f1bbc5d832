// SeT attention with Nystrom features on CPU, one (batch, head) group per
// task (OpenMP through at::parallel_for): features, log kernel, Gibbs
// kernel, Sinkhorn, gather and scatter of a group run back to back on
// per-thread N x m / N x a buffers that stay in cache, reading q / k / v
// from the qkv projection as laid out and writing out / dqkv in place.
// Nothing N x m is kept between forward and backward: backward recomputes
// each side's kernel (two small GEMMs and two exps per entry).
//
// Per group (ops/set_transport.py has the same maths in PyTorch ops):
//   log = exp((x z^T / |x| - 1) / sigma^2) W + c_h pos,  K = exp(log - rowmax)
// (pos (N, m) shared by the heads or per head, c_h a per-head scale: SeT's
// positional penalty is -|p_i - p_j|^2 / (2 sigma_h^2), so no (h, N, m)
// tensor nor its gradient is formed)
//   keys:    (u_k, v_k) = Sinkhorn(K_k), 2L updates (columns exact)
//            Z = m v_k^T * (K_k^T (u_k * V))                       (m, d)
//   queries: (u_q, v_q) = Sinkhorn(K_q), 2L + 1 updates (rows exact)
//            out = n u_q * (K_q (v_q^T * Z))                       (N, d)
// GEMMs are ATen's (single-threaded inside the parallel region).
// Tried and measured slower: row tiles with only K whole-group (backward
// recomputing each tile's features and plan gradient in a second pass):
// 44 vs 34 ms fwd+bwd at 3136 tokens, 202 vs 178 ms at 12544 (B=8, 2 heads);
// and one pass over K per row + column Sinkhorn update pair: no change.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "sinkhorn_group.h"

namespace {

constexpr double kTiny = 1e-30;

struct Problem {
  int64_t B, N, h, d, a, m;
  int n_rows_last, n_cols_last;  // queries: 2L + 1 updates, keys: 2L
  double sigma;
  const bool* mask;  // (B, N) or null
  int64_t groups() const { return B * h; }
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

// One thread's buffers: a side's kernel and features, and temporaries.
struct Scratch {
  at::Tensor cos, feat, gfeat, inv, kern, plan, nd, nd2, md, left, right,
      marg_a, marg_b, grad_u, grad_v;
  Scratch(const Problem& p, int n_max, const at::TensorOptions& opt)
      : cos(at::empty({p.N, p.a}, opt)),
        feat(at::empty({p.N, p.a}, opt)),
        gfeat(at::empty({p.N, p.a}, opt)),
        inv(at::empty({p.N}, opt)),
        kern(at::empty({p.N, p.m}, opt)),
        plan(at::empty({p.N, p.m}, opt)),
        nd(at::empty({p.N, p.d}, opt)),
        nd2(at::empty({p.N, p.d}, opt)),
        md(at::empty({p.m, p.d}, opt)),
        left(at::empty({p.N * n_max}, opt)),
        right(at::empty({n_max * p.m}, opt)),
        marg_a(at::empty({p.N}, opt)),
        marg_b(at::full({p.m}, 1.0 / p.m, opt)),
        grad_u(at::empty({p.N}, opt)),
        grad_v(at::empty({p.m}, opt)) {}
};

// x (N, d) with strided rows -> s.cos, s.feat, s.inv and the Gibbs kernel
// s.kern (rows outside the mask zero).
template <typename T>
void gibbs_kernel(const Problem& p, const at::Tensor& x, const at::Tensor& z,
                  const at::Tensor& w, const at::Tensor& pos, T pos_scale,
                  const bool* mask_row, Scratch& s) {
  at::mm_out(s.cos, x, z.t());
  const T* xp = x.data_ptr<T>();
  const int64_t xs = x.stride(0);
  T* c = s.cos.data_ptr<T>();
  T* f = s.feat.data_ptr<T>();
  T* iv = s.inv.data_ptr<T>();
  const T scale = T(1.0 / (p.sigma * p.sigma));
  for (int64_t i = 0; i < p.N; ++i) {
    T sq = 0;
    for (int64_t j = 0; j < p.d; ++j) sq += xp[i * xs + j] * xp[i * xs + j];
    const T r = T(1) / std::max(std::sqrt(sq), T(1e-12));
    iv[i] = r;
    for (int64_t j = 0; j < p.a; ++j) {
      c[i * p.a + j] *= r;
      f[i * p.a + j] = (c[i * p.a + j] - T(1)) * scale;
    }
  }
  s.feat.exp_();
  at::mm_out(s.kern, s.feat, w);
  T* k = s.kern.data_ptr<T>();
  const T* pp = pos.defined() ? pos.data_ptr<T>() : nullptr;
  for (int64_t i = 0; i < p.N; ++i) {
    T* ki = k + i * p.m;
    if (pp)
      for (int64_t j = 0; j < p.m; ++j) ki[j] += pos_scale * pp[i * p.m + j];
    T mx = ki[0];
    for (int64_t j = 1; j < p.m; ++j) mx = std::max(mx, ki[j]);
    for (int64_t j = 0; j < p.m; ++j) ki[j] -= mx;
  }
  s.kern.exp_();
  if (mask_row)
    for (int64_t i = 0; i < p.N; ++i)
      if (!mask_row[i]) std::fill(k + i * p.m, k + (i + 1) * p.m, T(0));
}

// Marginal a (1/n on valid rows) into s.marg_a; returns n_valid.
template <typename T>
T row_marginal(const Problem& p, const bool* mask_row, Scratch& s) {
  T* a = s.marg_a.data_ptr<T>();
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
void sinkhorn(const Problem& p, const Scratch& s, Trace& t, int64_t g) {
  const int64_t G = p.groups();
  mmeffattn::sinkhorn_group_forward(
      s.kern.data_ptr<T>(), s.marg_a.data_ptr<T>(), s.marg_b.data_ptr<T>(),
      p.N, p.m, t.n_updates(), T(kTiny), t.U.data_ptr<T>() + g * p.N,
      t.S.data_ptr<T>() + g * p.N, G * p.N, t.V.data_ptr<T>() + g * p.m,
      t.D.data_ptr<T>() + g * p.m, G * p.m);
}

// dst row i = coef[i] * factor * src row i (N x d; row strides given)
template <typename T>
void scale_rows(const T* src, int64_t src_stride, const T* coef, T factor,
                T* dst, int64_t dst_stride, int64_t N, int64_t d) {
  for (int64_t i = 0; i < N; ++i) {
    const T c = (coef ? coef[i] : T(1)) * factor;
    const T* si = src + i * src_stride;
    T* di = dst + i * dst_stride;
    for (int64_t j = 0; j < d; ++j) di[j] = c * si[j];
  }
}

// The views of one (batch, head) group.
struct Group {
  int64_t b, head;
  at::Tensor q, k, v, z, w, pos;  // (N, d) strided rows, (a, d), (a, m), (N, m)
  double pos_scale = 1.0;
  const bool* mask_row;
  Group(const Problem& p, const at::Tensor& qkv, const at::Tensor& z_all,
        const at::Tensor& w_all, const at::Tensor& pos_all,
        const at::Tensor& scale_all, int64_t g)
      : b(g / p.h), head(g % p.h) {
    const at::Tensor xb = qkv[b];  // (N, 3, h, d)
    q = xb.select(1, 0).select(1, head);
    k = xb.select(1, 1).select(1, head);
    v = xb.select(1, 2).select(1, head);
    z = z_all[head];
    w = w_all[head];
    if (pos_all.defined()) pos = pos_all[pos_all.size(0) == 1 ? 0 : head];
    if (scale_all.defined()) pos_scale = scale_all.data_ptr<double>()[head];
    mask_row = p.mask ? p.mask + b * p.N : nullptr;
  }
};

template <typename T>
void forward_group(const Problem& p, const Group& x, Trace& tq, Trace& tk,
                   const at::Tensor& out, const at::Tensor& gather,
                   int64_t g, Scratch& s) {
  const T n_valid = row_marginal<T>(p, x.mask_row, s);
  // keys: Z = m v_k^T * (K_k^T (u_k * V))
  gibbs_kernel<T>(p, x.k, x.z, x.w, x.pos, T(x.pos_scale), x.mask_row, s);
  sinkhorn<T>(p, s, tk, g);
  scale_rows<T>(x.v.data_ptr<T>(), x.v.stride(0), tk.u<T>(g), T(1),
                s.nd.data_ptr<T>(), p.d, p.N, p.d);
  at::Tensor z_g = gather[x.b][x.head];  // (m, d)
  at::mm_out(z_g, s.kern.t(), s.nd);
  T* zp = z_g.data_ptr<T>();
  scale_rows<T>(zp, p.d, tk.v<T>(g), T(p.m), zp, p.d, p.m, p.d);
  // queries: out = n u_q * (K_q (v_q^T * Z))
  gibbs_kernel<T>(p, x.q, x.z, x.w, x.pos, T(x.pos_scale), x.mask_row, s);
  sinkhorn<T>(p, s, tq, g);
  scale_rows<T>(zp, p.d, tq.v<T>(g), T(1), s.md.data_ptr<T>(), p.d, p.m,
                p.d);
  at::mm_out(s.nd, s.kern, s.md);
  scale_rows<T>(s.nd.data_ptr<T>(), p.d, tq.u<T>(g), n_valid,
                out[x.b].select(1, x.head).data_ptr<T>(), p.h * p.d, p.N,
                p.d);
}

// s.plan = dL/dT (N, m) for T = u K v -> dL/dlogK = dL/dK * K, in place:
// the direct term dL/dT * u v plus the reverse pass over the iterates.
template <typename T>
void plan_to_log_grad(const Problem& p, const Trace& t, int64_t g,
                      Scratch& s) {
  const int64_t N = p.N, M = p.m, G = p.groups();
  const T* u = t.u<T>(g);
  const T* v = t.v<T>(g);
  const T* K = s.kern.data_ptr<T>();
  T* P = s.plan.data_ptr<T>();
  T* gu = s.grad_u.data_ptr<T>();
  T* gv = s.grad_v.data_ptr<T>();
  std::fill(gv, gv + M, T(0));
  for (int64_t i = 0; i < N; ++i) {
    T acc = 0;
    for (int64_t l = 0; l < M; ++l) {
      const T pk = P[i * M + l] * K[i * M + l];
      acc += pk * v[l];
      gv[l] += u[i] * pk;
      P[i * M + l] *= u[i] * v[l];
    }
    gu[i] = acc;
  }
  const int n = t.n_updates();
  at::Tensor left = s.left.narrow(0, 0, N * n).view({N, n});
  at::Tensor right = s.right.narrow(0, 0, n * M).view({n, M});
  mmeffattn::sinkhorn_group_backward(
      K, t.U.data_ptr<T>() + g * N, t.S.data_ptr<T>() + g * N, G * N,
      t.V.data_ptr<T>() + g * M, t.D.data_ptr<T>() + g * M, G * M, gu, gv, N,
      M, n, T(kTiny), left.data_ptr<T>(), right.data_ptr<T>());
  s.plan.addmm_(left, right);
  s.plan.mul_(s.kern);
}

// Backward of the features and log kernel for dL/dlog in s.plan: writes
// dL/dx (strided rows) and adds to this thread's dL/dz, dL/dW.
template <typename T>
void features_backward(const Problem& p, const at::Tensor& x,
                       const at::Tensor& z, const at::Tensor& w, Scratch& s,
                       T* grad_x, int64_t grad_stride, at::Tensor grad_z,
                       at::Tensor grad_w) {
  at::mm_out(s.gfeat, s.plan, w.t());
  grad_w.addmm_(s.feat.t(), s.plan);
  const T scale = T(1.0 / (p.sigma * p.sigma));
  T* gf = s.gfeat.data_ptr<T>();
  const T* f = s.feat.data_ptr<T>();
  const T* c = s.cos.data_ptr<T>();
  const T* iv = s.inv.data_ptr<T>();
  T* coef = s.grad_u.data_ptr<T>();
  for (int64_t i = 0; i < p.N; ++i) {
    T gn = 0;
    for (int64_t j = 0; j < p.a; ++j) {
      const T gc = gf[i * p.a + j] * f[i * p.a + j] * scale;  // d cos
      gn += gc * c[i * p.a + j];
      gf[i * p.a + j] = gc * iv[i];  // d (x z^T)
    }
    // cos = x z^T / |x|; |x| clamped at 1e-12: no gradient through it
    coef[i] = iv[i] >= T(0.5e12) ? T(0) : gn * iv[i] * iv[i];
  }
  at::mm_out(s.nd, s.gfeat, z);
  const T* xp = x.data_ptr<T>();
  const T* nd = s.nd.data_ptr<T>();
  const int64_t xs = x.stride(0), N = p.N, d = p.d;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < d; ++j)
      grad_x[i * grad_stride + j] = nd[i * d + j] - coef[i] * xp[i * xs + j];
  grad_z.addmm_(s.gfeat.t(), x);
}

// This thread's sums over its groups of the per-head parameter gradients.
struct Accumulators {
  // (h, a, d), (h, a, m), (P, N, m) and (h) or undefined
  at::Tensor z, w, pos, pos_scale;
};

// dL/dlog in s.plan -> the positional term's gradients
template <typename T>
void positional_backward(const Group& x, const Scratch& s,
                         Accumulators& acc) {
  if (acc.pos.defined())
    acc.pos[acc.pos.size(0) == 1 ? 0 : x.head].add_(s.plan, x.pos_scale);
  if (acc.pos_scale.defined()) {
    const T* g = s.plan.data_ptr<T>();
    const T* pp = x.pos.data_ptr<T>();
    const int64_t n = s.plan.numel();
    T dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += g[i] * pp[i];
    acc.pos_scale.data_ptr<T>()[x.head] += dot;
  }
}

template <typename T>
void backward_group(const Problem& p, const Group& x, const Trace& tq,
                    const Trace& tk, const at::Tensor& gather,
                    const at::Tensor& grad_out, const at::Tensor& grad_qkv,
                    Accumulators& acc, int64_t g, Scratch& s) {
  const T n_valid = row_marginal<T>(p, x.mask_row, s);
  const int64_t row_stride = 3 * p.h * p.d;
  T* gq = grad_qkv[x.b].select(1, 0).select(1, x.head).data_ptr<T>();
  T* gk = grad_qkv[x.b].select(1, 1).select(1, x.head).data_ptr<T>();
  T* gv = grad_qkv[x.b].select(1, 2).select(1, x.head).data_ptr<T>();
  // queries: g = n dL/dout; dL/dZ = m v_q^T * (K_q^T (u_q * g));
  // dL/dT^q = g Z^T
  gibbs_kernel<T>(p, x.q, x.z, x.w, x.pos, T(x.pos_scale), x.mask_row, s);
  scale_rows<T>(grad_out[x.b].select(1, x.head).data_ptr<T>(), p.h * p.d,
                nullptr, n_valid, s.nd2.data_ptr<T>(), p.d, p.N, p.d);
  scale_rows<T>(s.nd2.data_ptr<T>(), p.d, tq.u<T>(g), T(1),
                s.nd.data_ptr<T>(), p.d, p.N, p.d);
  at::mm_out(s.md, s.kern.t(), s.nd);
  T* md = s.md.data_ptr<T>();
  scale_rows<T>(md, p.d, tq.v<T>(g), T(p.m), md, p.d, p.m, p.d);
  at::mm_out(s.plan, s.nd2, gather[x.b][x.head].t());
  plan_to_log_grad<T>(p, tq, g, s);
  positional_backward<T>(x, s, acc);
  features_backward<T>(p, x.q, x.z, x.w, s, gq, row_stride, acc.z[x.head],
                       acc.w[x.head]);
  // keys: dL/dT^k = V dZ^T; dL/dV = u_k * (K_k (v_k^T * dZ))
  gibbs_kernel<T>(p, x.k, x.z, x.w, x.pos, T(x.pos_scale), x.mask_row, s);
  at::mm_out(s.plan, x.v, s.md.t());
  scale_rows<T>(md, p.d, tk.v<T>(g), T(1), md, p.d, p.m, p.d);
  at::mm_out(s.nd, s.kern, s.md);
  scale_rows<T>(s.nd.data_ptr<T>(), p.d, tk.u<T>(g), T(1), gv, row_stride,
                p.N, p.d);
  plan_to_log_grad<T>(p, tk, g, s);
  positional_backward<T>(x, s, acc);
  features_backward<T>(p, x.k, x.z, x.w, s, gk, row_stride, acc.z[x.head],
                       acc.w[x.head]);
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
      Scratch s(p, p.n_rows_last, o);
      for (int64_t g = begin; g < end; ++g)
        forward_group<scalar_t>(p, Group(p, qkv, z, w, pos, scale, g), tq,
                                tk, out, gather, g, s);
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
      Accumulators acc{acc_z[tid], acc_w[tid],
                       need_pos ? acc_pos[tid] : at::Tensor(),
                       need_scale ? acc_scale[tid] : at::Tensor()};
      Scratch s(p, p.n_rows_last, o);
      for (int64_t g = begin; g < end; ++g)
        backward_group<scalar_t>(p, Group(p, qkv, z, w, pos, scale, g), tq,
                                 tk, gather, grad_out, grad_qkv, acc, g, s);
    });
  });
  return {grad_qkv, acc_z.sum(0), acc_w.sum(0),
          need_pos ? acc_pos.sum(0) : at::Tensor(),
          need_scale ? acc_scale.sum(0) : at::Tensor()};
}
