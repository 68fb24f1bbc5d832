// Fused SASA local attention on CPU, channels-first.
//
// Layout: q, k, v: (B, heads, d, H, W) whose (d, H, W) block is contiguous
// (any batch / head strides: views of a 1x1 conv's (B, 3C, H, W) output need
// no copy); out: (B, heads, d, H, W) contiguous, i.e. (B, C, H, W);
// rel_row, rel_col: (k, d/2). Backward recomputes the attention weights
// (nothing but the inputs is saved: no k^2 weights per pixel).
//
// One (batch, head) plane per task (OpenMP through at::parallel_for). The
// plane's q (scaled), k and v are copied once into zero-padded, cache-resident
// buffers: k and v get an r = k/2 border of zeros (the 'zero' border then
// needs no branch) and every row is padded to a multiple of kLanes queries
// (simd_vec.h: 16 with AVX-512, else 8). All inner loops then run over
// kLanes consecutive queries of one image row (one vector register of
// floats) with fixed trip counts, for every window offset:
//   logit[o][j] = q[:, i, j] . (k[:, i+a-r, j+b-r] + r_row[a] (+) r_col[b])
// vectorises like a depthwise convolution, and the accumulators of a block
// of offsets (logits) or channels (outputs) stay in registers. The softmax
// runs per block of kLanes queries on a kk x kLanes buffer in L1, its max
// taken as the logits are made; the forward normalises the d outputs, not
// the kk weights (block_weights, forward_row).
// border 'mask': positions outside the image are excluded from the softmax;
// 'zero': they take part with k = v = 0 (logit q.r). Built with -ffast-math;
// excluded logits get a large finite negative value, never an infinity.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "simd_vec.h"

namespace {

using mmeffattn::loadu;
using mmeffattn::storeu;
using mmeffattn::Vec;
constexpr int64_t kVec = mmeffattn::kLanes;  // queries per inner block

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Geometry of one plane and its padded buffers.
struct Geometry {
  int64_t H, W, d, ks, r, kk, half;
  int64_t Wq;  // query row stride (W rounded up to kVec)
  int64_t Hp;  // padded key rows (H + 2r)
  int64_t Wk;  // padded key row stride (Wq + 2r, rounded up)
  Geometry(int64_t H_, int64_t W_, int64_t d_, int64_t ks_)
      : H(H_), W(W_), d(d_), ks(ks_), r(ks_ / 2), kk(ks_ * ks_),
        half(d_ / 2), Wq(round_up(W_, kVec)), Hp(H_ + 2 * (ks_ / 2)),
        Wk(round_up(round_up(W_, kVec) + 2 * (ks_ / 2), kVec)) {}
  int64_t ksize() const { return d * Hp * Wk; }
};

// (d, H, W) plane -> interior of the (d, Hp, Wk) buffer (border stays zero).
template <typename T>
void load_keys(const T* src, T* dst, const Geometry& g) {
  for (int64_t c = 0; c < g.d; ++c)
    for (int64_t i = 0; i < g.H; ++i)
      std::memcpy(dst + (c * g.Hp + i + g.r) * g.Wk + g.r,
                  src + (c * g.H + i) * g.W, g.W * sizeof(T));
}

// S[(a*ks + b0 + n)][jb..] += sum_c x[c][jb..] * y[c][i+a][jb+b0+n..] for
// n < NB: NB accumulators in registers share each x load.
template <typename T, int NB>
inline void window_dot_block(const T* __restrict__ x, int64_t xs,
                             const T* __restrict__ y, int64_t ys, int64_t d,
                             T* __restrict__ S, int64_t Ss) {
  using V = typename Vec<T>::type;
  V acc[NB];
  for (int n = 0; n < NB; ++n) acc[n] = loadu(S + n * Ss);
  for (int64_t c = 0; c < d; ++c) {
    const V xv = loadu(x + c * xs);
    const T* yc = y + c * ys;
    for (int n = 0; n < NB; ++n) acc[n] += xv * loadu(yc + n);
  }
  for (int n = 0; n < NB; ++n) storeu(S + n * Ss, acc[n]);
}

// S[a*ks+b][j] += sum_c x[c][j] * y[c][i+a][j+b] for one query row i:
// x has d rows of stride xs, y is a padded (d, Hp, Wk) key buffer.
template <typename T>
void window_dots(const T* x, int64_t xs, const T* ybuf, const Geometry& g,
                 int64_t i, T* S, int64_t Ss) {
  const int64_t ys = g.Hp * g.Wk;
  for (int64_t a = 0; a < g.ks; ++a) {
    const T* y = ybuf + (i + a) * g.Wk;
    for (int64_t jb = 0; jb < g.Wq; jb += kVec) {
      for (int64_t b0 = 0; b0 < g.ks; b0 += 8) {
        T* s = S + (a * g.ks + b0) * Ss + jb;
        const T* yb = y + jb + b0;
        switch (std::min<int64_t>(8, g.ks - b0)) {
#define MMEFFATTN_DOTS(N) \
  case N: window_dot_block<T, N>(x + jb, xs, yb, ys, g.d, s, Ss); break;
          MMEFFATTN_DOTS(8) MMEFFATTN_DOTS(7) MMEFFATTN_DOTS(6)
          MMEFFATTN_DOTS(5) MMEFFATTN_DOTS(4) MMEFFATTN_DOTS(3)
          MMEFFATTN_DOTS(2) MMEFFATTN_DOTS(1)
#undef MMEFFATTN_DOTS
        }
      }
    }
  }
}

// out[c0+n][jb..] = scale * sum_{a,b} w[a*ks+b][jb..] * y[c0+n][i+a][jb+b..]
// for n < NC: NC accumulators in registers share each weight load.
template <typename T, int NC>
inline void window_combine_block(
    const T* __restrict__ w, int64_t ws, const T* __restrict__ y, int64_t ys,
    int64_t Wk, int64_t ks, T* __restrict__ out, int64_t os,
    const typename Vec<T>::type& scale = typename Vec<T>::type{} + T(1)) {
  using V = typename Vec<T>::type;
  V acc[NC];
  for (int n = 0; n < NC; ++n) acc[n] = V{};
  for (int64_t a = 0; a < ks; ++a) {
    const T* ya = y + a * Wk;
    for (int64_t b = 0; b < ks; ++b) {
      const V wv = loadu(w + (a * ks + b) * ws);
      for (int n = 0; n < NC; ++n) acc[n] += wv * loadu(ya + n * ys + b);
    }
  }
  for (int n = 0; n < NC; ++n) storeu(out + n * os, acc[n] * scale);
}

// out[c][j] = sum_{a,b} w[a*ks+b][j] * y[c][i+a][j+b] (rows of stride os).
template <typename T>
void window_combine(const T* w, int64_t ws, const T* ybuf, const Geometry& g,
                    int64_t i, T* out, int64_t os) {
  const int64_t ys = g.Hp * g.Wk;
  for (int64_t c0 = 0; c0 < g.d; c0 += 8) {
    const T* y = ybuf + c0 * ys + i * g.Wk;
    for (int64_t jb = 0; jb < g.Wq; jb += kVec) {
      T* o = out + c0 * os + jb;
      switch (std::min<int64_t>(8, g.d - c0)) {
#define MMEFFATTN_COMBINE(N)                                                \
  case N:                                                                   \
    window_combine_block<T, N>(w + jb, ws, y + jb, ys, g.Wk, g.ks, o, os); \
    break;
        MMEFFATTN_COMBINE(8) MMEFFATTN_COMBINE(7) MMEFFATTN_COMBINE(6)
        MMEFFATTN_COMBINE(5) MMEFFATTN_COMBINE(4) MMEFFATTN_COMBINE(3)
        MMEFFATTN_COMBINE(2) MMEFFATTN_COMBINE(1)
#undef MMEFFATTN_COMBINE
      }
    }
  }
}

// Whether window offset (a, b) of query (i, j) lies in the image.
struct Validity {
  const Geometry& g;
  bool row(int64_t i, int64_t a) const {
    const int64_t y = i + a - g.r;
    return y >= 0 && y < g.H;
  }
  int64_t col_begin(int64_t b) const { return std::max<int64_t>(0, g.r - b); }
  int64_t col_end(int64_t b) const {
    return std::min<int64_t>(g.Wq, g.W + g.r - b);
  }
};

// Logits of offsets (a, b0 + n), n < NB, for kVec queries: rel_r + rel_c[n]
// + sum_c x[c] y[c][b0 + n..], written to L (rows of kVec), max into mx.
template <typename T, int NB>
inline void logit_block(const T* __restrict__ x, int64_t xs,
                        const T* __restrict__ y, int64_t ys, int64_t d,
                        const typename Vec<T>::type& rel_r,
                        const T* __restrict__ rel_c, T* __restrict__ L,
                        typename Vec<T>::type& mx) {
  using V = typename Vec<T>::type;
  V acc[NB];
  for (int n = 0; n < NB; ++n) acc[n] = rel_r + loadu(rel_c + n * kVec);
  for (int64_t c = 0; c < d; ++c) {
    const V xv = loadu(x + c * xs);
    const T* yc = y + c * ys;
    for (int n = 0; n < NB; ++n) acc[n] += xv * loadu(yc + n);
  }
  for (int n = 0; n < NB; ++n) {
    storeu(L + n * kVec, acc[n]);
    mx = mx > acc[n] ? mx : acc[n];
  }
}

// Scratch of one thread for block_weights.
template <typename T>
struct BlockScratch {
  std::vector<T> L, rel, mx, inv;
  explicit BlockScratch(const Geometry& g)
      : L(g.kk * kVec), rel(2 * g.ks * kVec), mx(kVec), inv(kVec) {}
};

// Attention weights of the kVec queries jb.. of query row i, unnormalised:
// L[o*kVec + l] = exp(logit - max) (exactly 0 for excluded offsets), and
// inv[l] = 1 / sum_o L[o*kVec + l] (0 for padding queries j >= W). The
// logits of the block are computed offset block by offset block with
// their running max, so the block's weights are made in one pass over an
// L1-resident kk x kVec buffer (the forward then normalises its d outputs
// instead of its kk weights). qi: query row i of the padded q buffer.
template <typename T>
void block_weights(const T* qi, const T* kp, const T* rr, const T* rc,
                   const Geometry& g, int64_t i, int64_t jb, bool mask,
                   BlockScratch<T>& sc) {
  using V = typename Vec<T>::type;
  const int64_t ys = g.Hp * g.Wk;
  const T kNeg = T(-1e30);
  T* L = sc.L.data();
  T* rel_r = sc.rel.data();           // (ks, kVec)
  T* rel_c = rel_r + g.ks * kVec;     // (ks, kVec)
  for (int64_t a = 0; a < g.ks; ++a) {
    V ar = V{}, ac = V{};
    for (int64_t c = 0; c < g.half; ++c) {
      ar += loadu(qi + c * ys + jb) * rr[a * g.half + c];
      ac += loadu(qi + (g.half + c) * ys + jb) * rc[a * g.half + c];
    }
    storeu(rel_r + a * kVec, ar);
    storeu(rel_c + a * kVec, ac);
  }
  V mx = V{} + kNeg;
  for (int64_t a = 0; a < g.ks; ++a) {
    const V ra = loadu(rel_r + a * kVec);
    const T* y = kp + (i + a) * g.Wk + jb;
    for (int64_t b0 = 0; b0 < g.ks; b0 += 8) {
      T* l = L + (a * g.ks + b0) * kVec;
      const T* rcb = rel_c + b0 * kVec;
      switch (std::min<int64_t>(8, g.ks - b0)) {
#define MMEFFATTN_LOGITS(N)                                              \
  case N:                                                                \
    logit_block<T, N>(qi + jb, ys, y + b0, ys, g.d, ra, rcb, l, mx);     \
    break;
        MMEFFATTN_LOGITS(8) MMEFFATTN_LOGITS(7) MMEFFATTN_LOGITS(6)
        MMEFFATTN_LOGITS(5) MMEFFATTN_LOGITS(4) MMEFFATTN_LOGITS(3)
        MMEFFATTN_LOGITS(2) MMEFFATTN_LOGITS(1)
#undef MMEFFATTN_LOGITS
      }
    }
  }
  if (mask) {  // excluded offsets: kNeg before the max, exactly 0 after exp
    const Validity valid{g};
    for (int64_t a = 0; a < g.ks; ++a)
      for (int64_t b = 0; b < g.ks; ++b) {
        T* l = L + (a * g.ks + b) * kVec;
        const bool row_ok = valid.row(i, a);
        const int64_t lo = valid.col_begin(b) - jb, hi = valid.col_end(b) - jb;
        for (int64_t n = 0; n < kVec; ++n)
          if (!row_ok || n < lo || n >= hi) l[n] = kNeg;
      }
    mx = V{} + kNeg;
    for (int64_t o = 0; o < g.kk; ++o) {
      const V lv = loadu(L + o * kVec);
      mx = mx > lv ? mx : lv;
    }
  }
  T* m = sc.mx.data();
  T* sum = sc.inv.data();
  storeu(m, mx);
  for (int64_t n = 0; n < kVec; ++n) sum[n] = 0;
  for (int64_t o = 0; o < g.kk; ++o) {
    T* l = L + o * kVec;
    for (int64_t n = 0; n < kVec; ++n) {
      T e = std::exp(std::max(l[n] - m[n], T(-80)));
      if (mask) e = l[n] > T(-1e29) ? e : T(0);
      l[n] = e;
      sum[n] += e;
    }
  }
  for (int64_t n = 0; n < kVec; ++n)
    sum[n] = (jb + n < g.W && sum[n] > T(0)) ? T(1) / sum[n] : T(0);
}

// Forward of query row i: rows[c][j] (d rows of stride Wq) = the attention
// output, block by block of kVec queries (block_weights, then the combine
// over v with the normalisation applied to the outputs).
template <typename T>
void forward_row(const T* qp, const T* kp, const T* vp, const T* rr,
                 const T* rc, const Geometry& g, int64_t i, bool mask,
                 T* rows, BlockScratch<T>& sc) {
  using V = typename Vec<T>::type;
  const int64_t ys = g.Hp * g.Wk;
  const T* qi = qp + (i + g.r) * g.Wk + g.r;
  for (int64_t jb = 0; jb < g.Wq; jb += kVec) {
    block_weights(qi, kp, rr, rc, g, i, jb, mask, sc);
    const V inv = loadu(sc.inv.data());
    for (int64_t c0 = 0; c0 < g.d; c0 += 8) {
      const T* y = vp + c0 * ys + i * g.Wk + jb;
      T* o = rows + c0 * g.Wq + jb;
      switch (std::min<int64_t>(8, g.d - c0)) {
#define MMEFFATTN_SCOMBINE(N)                                             \
  case N:                                                                 \
    window_combine_block<T, N>(sc.L.data(), kVec, y, ys, g.Wk, g.ks, o,   \
                               g.Wq, inv);                                \
    break;
        MMEFFATTN_SCOMBINE(8) MMEFFATTN_SCOMBINE(7) MMEFFATTN_SCOMBINE(6)
        MMEFFATTN_SCOMBINE(5) MMEFFATTN_SCOMBINE(4) MMEFFATTN_SCOMBINE(3)
        MMEFFATTN_SCOMBINE(2) MMEFFATTN_SCOMBINE(1)
#undef MMEFFATTN_SCOMBINE
      }
    }
  }
}

// (d, H, W) plane -> interior of a padded (d, Hp, Wk) buffer times scale.
template <typename T>
void load_scaled(const T* src, T* dst, const Geometry& g, T scale) {
  for (int64_t c = 0; c < g.d; ++c)
    for (int64_t i = 0; i < g.H; ++i) {
      const T* s = src + (c * g.H + i) * g.W;
      T* o = dst + (c * g.Hp + i + g.r) * g.Wk + g.r;
      for (int64_t j = 0; j < g.W; ++j) o[j] = s[j] * scale;
    }
}

template <typename T>
void forward_kernel(const T* q, const T* k, const T* v, int64_t sb,
                    int64_t sh, int64_t heads, const T* rr, const T* rc,
                    T* out, int64_t BH, const Geometry& g, T scale,
                    bool mask) {
  at::parallel_for(0, BH, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> qp(g.ksize(), 0), kp(g.ksize(), 0), vp(g.ksize(), 0);
    std::vector<T> rows(g.d * g.Wq);
    BlockScratch<T> sc(g);
    const int64_t plane = g.d * g.H * g.W;
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t off = (bh / heads) * sb + (bh % heads) * sh;
      load_scaled(q + off, qp.data(), g, scale);
      load_keys(k + off, kp.data(), g);
      load_keys(v + off, vp.data(), g);
      T* o = out + bh * plane;
      for (int64_t i = 0; i < g.H; ++i) {
        forward_row(qp.data(), kp.data(), vp.data(), rr, rc, g, i, mask,
                    rows.data(), sc);
        for (int64_t c = 0; c < g.d; ++c)
          std::memcpy(o + (c * g.H + i) * g.W, rows.data() + c * g.Wq,
                      g.W * sizeof(T));
      }
    }
  });
}

// Key-side gradients of key row y, as a gather over the query rows
// i = y - r + a' (a' < ks) whose windows contain it:
//   out[c][y][x] = sum_{a', b'} w_i[(2r-a')*ks + (2r-b')][x + b'] z[c][i][x+b']
// w_i: the ring slot of query row i (kk rows of stride Wk, column j stored at
// j + r, zero outside [0, W)); z: a padded (d, Hp, Wk) query-side buffer.
// NC channels share each weight load.
template <typename T, int NC>
inline void key_grad_block(const T* const* w, const T* const* z, int64_t zs,
                           const Geometry& g, T* __restrict__ out,
                           int64_t os) {
  using V = typename Vec<T>::type;
  V acc[NC];
  for (int n = 0; n < NC; ++n) acc[n] = V{};
  for (int64_t a = 0; a < g.ks; ++a) {
    if (w[a] == nullptr) continue;  // query row outside the image
    for (int64_t b = 0; b < g.ks; ++b) {
      const V wv = loadu(w[a] + (g.ks - 1 - b) * g.Wk + b);
      for (int n = 0; n < NC; ++n) acc[n] += wv * loadu(z[a] + n * zs + b);
    }
  }
  for (int n = 0; n < NC; ++n) storeu(out + n * os, acc[n]);
}

template <typename T>
void key_grads(const T* ring, const T* zbuf, const Geometry& g, int64_t y,
               T* out, int64_t os) {
  const int64_t ys = g.Hp * g.Wk, rs = g.kk * g.Wk;
  const T* w[64];
  const T* z[64];
  for (int64_t c0 = 0; c0 < g.d; c0 += 8) {
    for (int64_t xb = 0; xb < g.Wq; xb += kVec) {
      for (int64_t a = 0; a < g.ks; ++a) {
        const int64_t i = y - g.r + a;
        const bool inside = i >= 0 && i < g.H;
        w[a] = inside ? ring + (i % g.ks) * rs +
                            (g.ks - 1 - a) * g.ks * g.Wk + xb
                      : nullptr;
        z[a] = zbuf + c0 * ys + (i + g.r) * g.Wk + xb;
      }
      T* o = out + c0 * os + xb;
      switch (std::min<int64_t>(8, g.d - c0)) {
#define MMEFFATTN_KEYS(N) \
  case N: key_grad_block<T, N>(w, z, ys, g, o, os); break;
        MMEFFATTN_KEYS(8) MMEFFATTN_KEYS(7) MMEFFATTN_KEYS(6)
        MMEFFATTN_KEYS(5) MMEFFATTN_KEYS(4) MMEFFATTN_KEYS(3)
        MMEFFATTN_KEYS(2) MMEFFATTN_KEYS(1)
#undef MMEFFATTN_KEYS
      }
    }
  }
}

// Scratch of one thread for backward_plane.
template <typename T>
struct BackwardBuffers {
  std::vector<T> qp, kp, vp, gp;  // (d, Hp, Wk) padded, q scaled
  std::vector<T> Gr, Pr;          // rings of ks query rows: (ks, kk, Wk)
  std::vector<T> rows, grow, gcol, s;
  BlockScratch<T> sc;
  explicit BackwardBuffers(const Geometry& g)
      : qp(g.ksize(), 0), kp(g.ksize(), 0), vp(g.ksize(), 0),
        gp(g.ksize(), 0), Gr(g.ks * g.kk * g.Wk), Pr(g.ks * g.kk * g.Wk),
        rows(g.d * g.Wq), grow(g.ks * g.Wq), gcol(g.ks * g.Wq), s(g.Wq),
        sc(g) {}
};

template <typename T>
void store_rows(const T* rows, int64_t rs, T* plane, const Geometry& g,
                int64_t i, T scale) {
  for (int64_t c = 0; c < g.d; ++c) {
    T* dst = plane + (c * g.H + i) * g.W;
    const T* src = rows + c * rs;
    for (int64_t j = 0; j < g.W; ++j) dst[j] = src[j] * scale;
  }
}

template <typename T>
void backward_plane(const T* gout, const T* q, const T* k, const T* v,
                    const T* rr, const T* rc, bool mask, T* gq, T* gk,
                    T* gv, T* grr, T* grc, const Geometry& g, T scale,
                    BackwardBuffers<T>& buf) {
  load_scaled(q, buf.qp.data(), g, scale);
  load_keys(k, buf.kp.data(), g);
  load_keys(v, buf.vp.data(), g);
  load_keys(gout, buf.gp.data(), g);
  std::fill(buf.Gr.begin(), buf.Gr.end(), T(0));
  std::fill(buf.Pr.begin(), buf.Pr.end(), T(0));
  const int64_t ys = g.Hp * g.Wk, rs = g.kk * g.Wk;
  T* rows = buf.rows.data();
  T* grow = buf.grow.data();
  T* gcol = buf.gcol.data();
  T* s = buf.s.data();
  for (int64_t i = 0; i < g.H; ++i) {
    // this query row's slot in the rings; column j at j + r
    T* G = buf.Gr.data() + (i % g.ks) * rs + g.r;
    T* P = buf.Pr.data() + (i % g.ks) * rs + g.r;
    const T* qi = buf.qp.data() + (i + g.r) * g.Wk + g.r;  // rows: stride ys
    const T* gi = buf.gp.data() + (i + g.r) * g.Wk + g.r;
    // the forward's weights, recomputed (the same code), normalised
    for (int64_t jb = 0; jb < g.Wq; jb += kVec) {
      block_weights(qi, buf.kp.data(), rr, rc, g, i, jb, mask, buf.sc);
      const T* L = buf.sc.L.data();
      const T* inv = buf.sc.inv.data();
      for (int64_t o = 0; o < g.kk; ++o)
        for (int64_t n = 0; n < kVec; ++n)
          P[o * g.Wk + jb + n] = L[o * kVec + n] * inv[n];
    }
    for (int64_t o = 0; o < g.kk; ++o)
      for (int64_t j = 0; j < g.Wq; ++j) G[o * g.Wk + j] = 0;
    // dP[o][j] = g_out[:, j] . v[:, i+a-r, j+b-r]
    window_dots(gi, ys, buf.vp.data(), g, i, G, g.Wk);
    // G = P * (dP - sum_o P dP)
    for (int64_t j = 0; j < g.Wq; ++j) s[j] = 0;
    for (int64_t o = 0; o < g.kk; ++o) {
      const T* p = P + o * g.Wk;
      const T* dp = G + o * g.Wk;
      for (int64_t j = 0; j < g.Wq; ++j) s[j] += p[j] * dp[j];
    }
    for (int64_t o = 0; o < g.kk; ++o) {
      const T* p = P + o * g.Wk;
      T* dp = G + o * g.Wk;
      for (int64_t j = 0; j < g.Wq; ++j) dp[j] = p[j] * (dp[j] - s[j]);
    }
    // relative terms: per-row and per-column sums of G
    for (int64_t a = 0; a < g.ks; ++a) {
      T* ga = grow + a * g.Wq;
      T* gb = gcol + a * g.Wq;
      for (int64_t j = 0; j < g.Wq; ++j) ga[j] = gb[j] = 0;
    }
    for (int64_t a = 0; a < g.ks; ++a)
      for (int64_t b = 0; b < g.ks; ++b) {
        const T* gab = G + (a * g.ks + b) * g.Wk;
        T* ga = grow + a * g.Wq;
        T* gb = gcol + b * g.Wq;
        for (int64_t j = 0; j < g.Wq; ++j) {
          ga[j] += gab[j];
          gb[j] += gab[j];
        }
      }
    // dq (scaled space) = sum_o G k + row/col embedding terms
    window_combine(G, g.Wk, buf.kp.data(), g, i, rows, g.Wq);
    for (int64_t c = 0; c < g.half; ++c) {
      T* dr = rows + c * g.Wq;
      T* dc = rows + (g.half + c) * g.Wq;
      const T* xr = qi + c * ys;
      const T* xc = qi + (g.half + c) * ys;
      for (int64_t a = 0; a < g.ks; ++a) {
        const T er = rr[a * g.half + c], ec = rc[a * g.half + c];
        const T* ga = grow + a * g.Wq;
        const T* gb = gcol + a * g.Wq;
        T accr = 0, accc = 0;
        for (int64_t j = 0; j < g.Wq; ++j) {
          dr[j] += ga[j] * er;
          dc[j] += gb[j] * ec;
          accr += ga[j] * xr[j];
          accc += gb[j] * xc[j];
        }
        grr[a * g.half + c] += accr;
        grc[a * g.half + c] += accc;
      }
    }
    store_rows(rows, g.Wq, gq, g, i, scale);
    // key row i - r has all its query rows now
    const int64_t y = i - g.r;
    if (y >= 0) {
      key_grads(buf.Gr.data(), buf.qp.data(), g, y, rows, g.Wq);
      store_rows(rows, g.Wq, gk, g, y, T(1));
      key_grads(buf.Pr.data(), buf.gp.data(), g, y, rows, g.Wq);
      store_rows(rows, g.Wq, gv, g, y, T(1));
    }
  }
  for (int64_t y = std::max<int64_t>(0, g.H - g.r); y < g.H; ++y) {
    key_grads(buf.Gr.data(), buf.qp.data(), g, y, rows, g.Wq);
    store_rows(rows, g.Wq, gk, g, y, T(1));
    key_grads(buf.Pr.data(), buf.gp.data(), g, y, rows, g.Wq);
    store_rows(rows, g.Wq, gv, g, y, T(1));
  }
}

template <typename T>
void backward_kernel(const T* gout, const T* q, const T* k, const T* v,
                     int64_t sb, int64_t sh, int64_t heads, const T* rr,
                     const T* rc, bool mask, T* gq, T* gk, T* gv,
                     int64_t gsb, int64_t gsh, T* grr, T* grc, int64_t BH,
                     const Geometry& g, T scale) {
  const int nthreads = at::get_num_threads();
  std::vector<std::vector<T>> rel_acc(nthreads,
                                      std::vector<T>(2 * g.ks * g.half, 0));
  at::parallel_for(0, BH, 1, [&](int64_t begin, int64_t end) {
    std::vector<T>& acc = rel_acc[at::get_thread_num()];
    BackwardBuffers<T> buf(g);
    const int64_t plane = g.d * g.H * g.W;
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t off = (bh / heads) * sb + (bh % heads) * sh;
      const int64_t goff = (bh / heads) * gsb + (bh % heads) * gsh;
      backward_plane<T>(gout + bh * plane, q + off, k + off, v + off, rr, rc,
                        mask, gq + goff, gk + goff, gv + goff, acc.data(), acc.data() + g.ks * g.half, g,
                        scale, buf);
    }
  });
  for (const auto& acc : rel_acc)
    for (int64_t c = 0; c < g.ks * g.half; ++c) {
      grr[c] += acc[c];
      grc[c] += acc[g.ks * g.half + c];
    }
}

// (B, heads, d, H, W) with a contiguous (d, H, W) block; returns (sb, sh).
std::pair<int64_t, int64_t> plane_strides(const at::Tensor& t,
                                          const char* name) {
  TORCH_CHECK(t.dim() == 5, name, " must be (B, heads, d, H, W), got ",
              t.sizes());
  const int64_t H = t.size(3), W = t.size(4);
  TORCH_CHECK(t.stride(4) == 1 && t.stride(3) == W && t.stride(2) == H * W,
              name, ": each (d, H, W) block must be contiguous");
  return {t.stride(0), t.stride(1)};
}

}  // namespace

at::Tensor local_attention_forward_cpu(at::Tensor q, at::Tensor k,
                                       at::Tensor v, at::Tensor rel_row,
                                       at::Tensor rel_col, int64_t kernel_size,
                                       bool mask, double scale) {
  const auto sq = plane_strides(q, "q");
  TORCH_CHECK(plane_strides(k, "k") == sq && plane_strides(v, "v") == sq,
              "q, k, v must share their batch and head strides");
  const int64_t B = q.size(0), heads = q.size(1);
  TORCH_CHECK(kernel_size % 2 == 1 && kernel_size >= 1 && kernel_size < 64,
              "kernel_size must be odd and < 64, got ", kernel_size);
  const Geometry g(q.size(3), q.size(4), q.size(2), kernel_size);
  auto out = at::empty(q.sizes(), q.options());
  auto rr = rel_row.contiguous(), rc = rel_col.contiguous();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "local_attention_fwd", [&] {
    forward_kernel<scalar_t>(
        q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
        v.data_ptr<scalar_t>(), sq.first, sq.second, heads,
        rr.data_ptr<scalar_t>(), rc.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), B * heads, g,
        static_cast<scalar_t>(scale), mask);
  });
  return out;
}

// Writes the gradients of q, k, v into gq, gk, gv: (B, heads, d, H, W) with
// contiguous (d, H, W) blocks and shared strides (slices of one dqkv tensor
// do); returns the gradients of rel_row and rel_col.
std::vector<at::Tensor> local_attention_backward_cpu(
    at::Tensor gout, at::Tensor q, at::Tensor k, at::Tensor v,
    at::Tensor rel_row, at::Tensor rel_col, int64_t kernel_size, bool mask,
    double scale, at::Tensor gq, at::Tensor gk, at::Tensor gv) {
  const auto sq = plane_strides(q, "q");
  TORCH_CHECK(plane_strides(k, "k") == sq && plane_strides(v, "v") == sq,
              "q, k, v must share their batch and head strides");
  const auto sg = plane_strides(gq, "grad q");
  TORCH_CHECK(plane_strides(gk, "grad k") == sg &&
                  plane_strides(gv, "grad v") == sg,
              "the gradients of q, k, v must share their strides");
  TORCH_CHECK(gq.sizes() == q.sizes() && gk.sizes() == q.sizes() &&
                  gv.sizes() == q.sizes(),
              "gradient buffers must have q's shape");
  gout = gout.contiguous();
  const int64_t B = q.size(0), heads = q.size(1);
  TORCH_CHECK(kernel_size % 2 == 1 && kernel_size >= 1 && kernel_size < 64,
              "kernel_size must be odd and < 64, got ", kernel_size);
  const Geometry g(q.size(3), q.size(4), q.size(2), kernel_size);
  auto rr = rel_row.contiguous(), rc = rel_col.contiguous();
  auto grr = at::zeros_like(rr), grc = at::zeros_like(rc);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "local_attention_bwd", [&] {
    backward_kernel<scalar_t>(
        gout.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(),
        k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), sq.first, sq.second,
        heads, rr.data_ptr<scalar_t>(), rc.data_ptr<scalar_t>(),
        mask, gq.data_ptr<scalar_t>(),
        gk.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(), sg.first,
        sg.second, grr.data_ptr<scalar_t>(), grc.data_ptr<scalar_t>(),
        B * heads, g, static_cast<scalar_t>(scale));
  });
  return {grr, grc};
}
