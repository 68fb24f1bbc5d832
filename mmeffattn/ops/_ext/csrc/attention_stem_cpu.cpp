// SASA's attention stem fused on CPU: the projections of each b x b input
// patch, self-attention inside the patch, BatchNorm's per-channel affine map,
// ReLU and the b x b max pool (whose windows are the patches), one patch at a
// time. The (B, C, H, W) full-resolution maps of the unfused stem (attention
// output, normalised, activated; and their gradients) are never written: the
// stem's cost becomes its arithmetic.
//
// Inputs: x (B, Cin, H, W) with H = nH*b, W = nW*b; wq, wk (C, Cin); wvt
// (C, Cin, P): the value projection of each patch position p (P = b*b,
// row-major); rel_row, rel_col (2b-1, d/2), index = key offset - query
// offset + b - 1, shared by the heads (C = heads * d).
//
// Two passes (ops/sasa/attention_stem.py composes them):
//   forward:  per-channel sum and sum of squares of the attention output y
//             (BatchNorm's batch statistics, accumulated in double), and the
//             max and min of y in each (patch, channel) (the pool takes one
//             of them by the sign of BatchNorm's scale);
//   backward: recomputes y per patch, finds the pooled y in it, and applies
//             dL/dy_p = alpha * gz [p = pooled] +
//             beta + gamma * y_p (BatchNorm's backward through its batch
//             statistics, folded by the caller into three per-channel
//             coefficients), then the attention and projection gradients.
// Every inner loop runs over the P positions of a patch held in registers
// (GCC vectors of kLanes, simd_vec.h; P = 16 or 64, blocks 4 and 8); the
// patch's matrix products keep up to 8 output rows in registers at once
// (independent multiply-add chains); one task per (image, patch row) through
// at::parallel_for (OpenMP).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "simd_vec.h"

namespace {

struct StemGeometry {
  int64_t B, Cin, C, heads, d, half, nh, nw, H, W;
};

// 8 positions of a patch as one GCC vector (simd_vec.h); a patch's P
// positions are P / 8 of them.
using mmeffattn::kLanes;
using mmeffattn::loadu;
using mmeffattn::storeu;
using mmeffattn::Vec;

// A row of P values held in registers: NV vectors.
template <typename T, int P>
struct Row {
  static constexpr int NV = P / kLanes;
  using V = typename Vec<T>::type;
  V v[NV];
  static Row zero() {
    Row r;
    for (int n = 0; n < NV; ++n) r.v[n] = V{};
    return r;
  }
  static Row load(const T* p) {
    Row r;
    for (int n = 0; n < NV; ++n) r.v[n] = loadu(p + n * kLanes);
    return r;
  }
  void store(T* p) const {
    for (int n = 0; n < NV; ++n) storeu(p + n * kLanes, v[n]);
  }
};

// Rows a, b after one butterfly step of a transpose in registers: lanes l
// with bit W set trade places with the other row's lanes l ^ W.
template <int W, typename V, std::size_t... L>
inline void butterfly(V& a, V& b, std::index_sequence<L...>) {
  constexpr int n = sizeof...(L);
  const V na = __builtin_shufflevector(a, b, ((L & W) ? n + (L ^ W) : L)...);
  const V nb = __builtin_shufflevector(a, b, ((L & W) ? n + L : (L ^ W))...);
  a = na;
  b = nb;
}

// kLanes rows of one vector each, transposed in place (log2(kLanes)
// butterfly steps of two-register shuffles).
template <typename V, int W = kLanes / 2>
inline void transpose_rows(V* r) {
  for (int i = 0; i < kLanes; ++i)
    if (!(i & W))
      butterfly<W>(r[i], r[i + W], std::make_index_sequence<kLanes>());
  if constexpr (W > 1) transpose_rows<V, W / 2>(r);
}

// x[i] = exp(x[i]) for n contiguous values: one loop the compiler
// vectorises (-ffast-math: glibc's vector exp).
template <typename T>
inline void exp_inplace(T* __restrict__ x, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}

template <typename T, int BLK>
struct StemKernel {
  static constexpr int P = BLK * BLK;
  static constexpr int R = 2 * BLK - 1;
  static_assert(P % kLanes == 0, "positions per patch: a multiple of kLanes");
  using RowT = Row<T, P>;
  const StemGeometry& g;
  const T* x;
  const T* wq;
  const T* wk;
  const T* wvt;
  const T* rr;
  const T* rc;

  // The relative offsets as 0/1 masks over the query positions p:
  // mrow[t][a][p] = 1 where a - p_row + BLK - 1 = t (key row a, row offset
  // t), mcol likewise for columns. Per-offset rows of P values select
  // per-key rows by multiply-adds instead of scalar index arithmetic.
  struct OffsetMasks {
    std::vector<T> row, col;  // (R, BLK, P) each
    OffsetMasks() : row(R * BLK * P, T(0)), col(R * BLK * P, T(0)) {
      for (int t = 0; t < R; ++t)
        for (int a = 0; a < BLK; ++a)
          for (int p = 0; p < P; ++p) {
            row[(t * BLK + a) * P + p] = T(a - p / BLK + BLK - 1 == t);
            col[(t * BLK + a) * P + p] = T(a - p % BLK + BLK - 1 == t);
          }
    }
  };

  // One thread's buffers: q, k, v of all C channels of one patch (C rows of
  // P), the per-head temporaries and, for backward, the patch's input
  // gradient (dxp, Cin rows of P) and a whole patch row's inputs and q/k/v
  // gradients (rx, rdq, rdk, rdv: nw patches of Cin or C rows of P),
  // reduced into the weight gradients once per row.
  struct Scratch {
    std::vector<T> xp, q, k, v, y, A, AT, dA, rowdot, coldot, grow, gcol,
        rowpart, colpart, dy, dxp, rx, rdq, rdk, rdv;
    OffsetMasks masks;
    Scratch(const StemGeometry& g, bool backward)
        : xp(g.Cin * P), q(g.C * P), k(g.C * P), v(g.C * P), y(g.d * P),
          A(P * P), AT(P * P), dA(P * P), rowdot(R * P), coldot(R * P),
          grow(R * P), gcol(R * P), rowpart(BLK * P), colpart(BLK * P),
          dy(g.d * P), dxp(backward ? g.Cin * P : 0),
          rx(backward ? g.nw * g.Cin * P : 0),
          rdq(backward ? g.nw * g.C * P : 0),
          rdk(backward ? g.nw * g.C * P : 0),
          rdv(backward ? g.nw * g.C * P : 0) {}
  };

  // out = in^T (P x P): in registers where a row is one vector
  static void transpose(const T* __restrict__ in, T* __restrict__ out) {
    if constexpr (P == kLanes) {
      using V = typename RowT::V;
      V r[P];
      for (int s = 0; s < P; ++s) r[s] = loadu(in + s * P);
      transpose_rows(r);
      for (int p = 0; p < P; ++p) storeu(out + p * P, r[p]);
    } else {
      for (int s = 0; s < P; ++s)
        for (int p = 0; p < P; ++p) out[p * P + s] = in[s * P + p];
    }
  }

  // out[a] = sum_t w[t] * m[t][a] (BLK rows of P; w: R rows of P), the
  // masks m as in OffsetMasks (one t per lane and a).
  static void select_offsets(const T* __restrict__ w,
                             const T* __restrict__ m, T* __restrict__ out) {
    RowT acc[BLK];
    for (int a = 0; a < BLK; ++a) acc[a] = RowT::zero();
    for (int t = 0; t < R; ++t) {
      const RowT wt = RowT::load(w + t * P);
      for (int a = 0; a < BLK; ++a) {
        const RowT mt = RowT::load(m + (t * BLK + a) * P);
        for (int n = 0; n < RowT::NV; ++n) acc[a].v[n] += wt.v[n] * mt.v[n];
      }
    }
    for (int a = 0; a < BLK; ++a) acc[a].store(out + a * P);
  }

  // out[t] = sum_a w[a] * m[t][a] (R rows of P; w: BLK rows of P).
  static void scatter_offsets(const T* __restrict__ w,
                              const T* __restrict__ m, T* __restrict__ out) {
    for (int t = 0; t < R; ++t) {
      RowT acc = RowT::zero();
      for (int a = 0; a < BLK; ++a) {
        const RowT wa = RowT::load(w + a * P);
        const RowT mt = RowT::load(m + (t * BLK + a) * P);
        for (int n = 0; n < RowT::NV; ++n) acc.v[n] += wa.v[n] * mt.v[n];
      }
      acc.store(out + t * P);
    }
  }

  // out[n] = (accumulate ? out[n] : 0) + sum_{j<J} coef[n*cn + j*cj] vec[j]
  // for NB rows n of P: NB independent accumulator chains share each vec
  // load (one chain per row would wait on the FMA latency at every j).
  template <int NB>
  static inline void rows_block(const T* __restrict__ coef, int64_t cn,
                                int64_t cj, const T* __restrict__ vec,
                                int64_t J, T* __restrict__ out,
                                bool accumulate) {
    RowT acc[NB];
    for (int n = 0; n < NB; ++n)
      acc[n] = accumulate ? RowT::load(out + n * P) : RowT::zero();
    for (int64_t j = 0; j < J; ++j) {
      const RowT x = RowT::load(vec + j * P);
      for (int n = 0; n < NB; ++n) {
        const T c = coef[n * cn + j * cj];
        for (int v = 0; v < RowT::NV; ++v) acc[n].v[v] += c * x.v[v];
      }
    }
    for (int n = 0; n < NB; ++n) acc[n].store(out + n * P);
  }

  // out (N rows of P) = [out +] coef (N x J, strides cn, cj) @ vec (J rows
  // of P): the patch's small matrix products.
  static void rows(const T* coef, int64_t cn, int64_t cj, const T* vec,
                   int64_t J, T* out, int64_t N, bool accumulate) {
    constexpr int NB = RowT::NV >= 8 ? 1 : 8 / RowT::NV;
    for (int64_t n = 0; n < N; n += NB) {
      const T* c = coef + n * cn;
      T* o = out + n * P;
      switch (std::min<int64_t>(NB, N - n)) {  // the last block: N - n rows
#define MMEFFATTN_ROWS(K) \
  case K: rows_block<(K < NB ? K : NB)>(c, cn, cj, vec, J, o, accumulate); break;
        MMEFFATTN_ROWS(8) MMEFFATTN_ROWS(7) MMEFFATTN_ROWS(6)
        MMEFFATTN_ROWS(5) MMEFFATTN_ROWS(4) MMEFFATTN_ROWS(3)
        MMEFFATTN_ROWS(2) MMEFFATTN_ROWS(1)
#undef MMEFFATTN_ROWS
      }
    }
  }

  // x of patch (bb, ph, pw) -> xp (Cin rows of P)
  void load_patch(int64_t bb, int64_t ph, int64_t pw, T* xp) const {
    for (int64_t i = 0; i < g.Cin; ++i)
      for (int py = 0; py < BLK; ++py)
        std::memcpy(xp + i * P + py * BLK,
                    x + ((bb * g.Cin + i) * g.H + ph * BLK + py) * g.W +
                        pw * BLK,
                    BLK * sizeof(T));
  }

  // q, k, v (C rows of P) of one patch
  void project(const T* __restrict__ xp, T* __restrict__ q,
               T* __restrict__ k, T* __restrict__ v) const {
    rows(wq, g.Cin, 1, xp, g.Cin, q, g.C, false);
    rows(wk, g.Cin, 1, xp, g.Cin, k, g.C, false);
    for (int64_t c = 0; c < g.C; ++c) {  // a projection per position
      RowT vc = RowT::zero();
      for (int64_t i = 0; i < g.Cin; ++i) {
        const RowT xi = RowT::load(xp + i * P);
        const RowT wv = RowT::load(wvt + (c * g.Cin + i) * P);
        for (int n = 0; n < RowT::NV; ++n) vc.v[n] += wv.v[n] * xi.v[n];
      }
      vc.store(v + c * P);
    }
  }

  // Softmax weights A[s][p] (key s, query p) of one head: q, k are the
  // head's d rows of P.
  void weights(const T* q, const T* k, Scratch& sc) const {
    T* A = sc.A.data();
    T* rowdot = sc.rowdot.data();
    T* coldot = sc.coldot.data();
    rows(rr, g.half, 1, q, g.half, rowdot, R, false);
    rows(rc, g.half, 1, q + g.half * P, g.half, coldot, R, false);
    // A[s][p] = rowdot[sy - py + BLK - 1][p] + coldot[sx - px + BLK - 1][p]
    T* rowpart = sc.rowpart.data();
    T* colpart = sc.colpart.data();
    select_offsets(rowdot, sc.masks.row.data(), rowpart);
    select_offsets(coldot, sc.masks.col.data(), colpart);
    for (int sy = 0; sy < BLK; ++sy) {
      const RowT r = RowT::load(rowpart + sy * P);
      for (int sx = 0; sx < BLK; ++sx) {
        RowT a = RowT::load(colpart + sx * P);
        for (int n = 0; n < RowT::NV; ++n) a.v[n] += r.v[n];
        a.store(A + (sy * BLK + sx) * P);
      }
    }
    rows(k, 1, P, q, g.d, A, P, true);  // A[s] += sum_c k[c][s] q[c]
    RowT mx = RowT::load(A);
    for (int s = 1; s < P; ++s) {
      const RowT a = RowT::load(A + s * P);
      for (int n = 0; n < RowT::NV; ++n)
        mx.v[n] = a.v[n] > mx.v[n] ? a.v[n] : mx.v[n];
    }
    for (int s = 0; s < P; ++s) {
      RowT a = RowT::load(A + s * P);
      for (int n = 0; n < RowT::NV; ++n) a.v[n] -= mx.v[n];
      a.store(A + s * P);
    }
    exp_inplace(A, P * P);
    RowT sum = RowT::zero();
    for (int s = 0; s < P; ++s) {
      const RowT a = RowT::load(A + s * P);
      for (int n = 0; n < RowT::NV; ++n) sum.v[n] += a.v[n];
    }
    for (int n = 0; n < RowT::NV; ++n) sum.v[n] = T(1) / sum.v[n];
    for (int s = 0; s < P; ++s) {
      RowT a = RowT::load(A + s * P);
      for (int n = 0; n < RowT::NV; ++n) a.v[n] *= sum.v[n];
      a.store(A + s * P);
    }
  }

  // y[c][p] = sum_s v[c][s] A[s][p] for the head's d channels
  void combine(const T* v, const T* A, T* y) const {
    rows(v, P, 1, A, P, y, g.d, false);
  }

  // Attention output y (d rows of P) of head h of the projected patch. One
  // compiled instance for forward and backward: backward finds the pooled
  // position by recomputing y, bit for bit.
  __attribute__((noinline)) void head_output(int64_t h, Scratch& sc) const {
    const int64_t off = h * g.d * P;
    weights(sc.q.data() + off, sc.k.data() + off, sc);
    combine(sc.v.data() + off, sc.A.data(), sc.y.data());
  }

  // Calls fn(bb, ph, pw, scratch) for every patch, one task per patch row.
  template <typename Fn>
  void for_each_patch(bool backward, Fn fn) const {
    at::parallel_for(0, g.B * g.nh, 1, [&](int64_t begin, int64_t end) {
      Scratch sc(g, backward);
      for (int64_t bi = begin; bi < end; ++bi)
        for (int64_t pw = 0; pw < g.nw; ++pw) {
          const int64_t bb = bi / g.nh, ph = bi % g.nh;
          load_patch(bb, ph, pw, sc.xp.data());
          project(sc.xp.data(), sc.q.data(), sc.k.data(), sc.v.data());
          fn(bb, ph, pw, sc);
        }
    });
  }

  // One pass: per-channel sum and sum of squares of y (BatchNorm's batch
  // statistics) and, per (patch, channel), the largest and smallest y:
  // BatchNorm's scale is weight / std, so the max pool of the normalised
  // map takes the largest y where weight >= 0 and the smallest where it is
  // negative (ReLU commutes with the max). Sums run in vectors of P per
  // channel over a patch row, then in double.
  void forward(double* s1, double* s2, T* ymax, T* ymin) const {
    const int64_t plane = g.nh * g.nw;
    const int nthreads = at::get_num_threads();
    std::vector<std::vector<double>> acc(nthreads,
                                         std::vector<double>(2 * g.C, 0));
    std::vector<std::vector<T>> row_acc(nthreads,
                                        std::vector<T>(2 * g.C * P, 0));
    for_each_patch(false, [&](int64_t bb, int64_t ph, int64_t pw,
                              Scratch& sc) {
      T* ra = row_acc[at::get_thread_num()].data();
      for (int64_t h = 0; h < g.heads; ++h) {
        head_output(h, sc);
        for (int64_t c = 0; c < g.d; ++c) {
          const int64_t ch = h * g.d + c;
          const RowT y = RowT::load(sc.y.data() + c * P);
          RowT sum = RowT::load(ra + ch * P);
          RowT sq = RowT::load(ra + (g.C + ch) * P);
          typename RowT::V hi = y.v[0], lo = y.v[0];
          for (int n = 0; n < RowT::NV; ++n) {
            sum.v[n] += y.v[n];
            sq.v[n] += y.v[n] * y.v[n];
            hi = y.v[n] > hi ? y.v[n] : hi;
            lo = y.v[n] < lo ? y.v[n] : lo;
          }
          sum.store(ra + ch * P);
          sq.store(ra + (g.C + ch) * P);
          T his = hi[0], los = lo[0];
          for (int l = 1; l < kLanes; ++l) {
            his = std::max(his, T(hi[l]));
            los = std::min(los, T(lo[l]));
          }
          const int64_t o = (bb * g.C + ch) * plane + ph * g.nw + pw;
          ymax[o] = his;
          ymin[o] = los;
        }
      }
      if (pw == g.nw - 1) {  // end of the task's patch row: into double
        std::vector<double>& a = acc[at::get_thread_num()];
        for (int64_t j = 0; j < 2 * g.C; ++j) {
          double t = 0;
          for (int p = 0; p < P; ++p) t += ra[j * P + p];
          a[j] += t;
        }
        std::fill(ra, ra + 2 * g.C * P, T(0));
      }
    });
    for (const auto& a : acc)
      for (int64_t c = 0; c < g.C; ++c) {
        s1[c] += a[c];
        s2[c] += a[g.C + c];
      }
  }

  // Gradients of one head given dy (d rows of P); q, k, v, A of the head.
  // Writes dq, dk, dv rows of the head; adds the relative-embedding
  // gradients, per position, to accr / accc ((R, half, P) each).
  void head_backward(const T* __restrict__ q, const T* __restrict__ k,
                     const T* __restrict__ v, Scratch& sc,
                     T* __restrict__ dq, T* __restrict__ dk,
                     T* __restrict__ dv, T* __restrict__ accr,
                     T* __restrict__ accc) const {
    const T* A = sc.A.data();
    const T* dy = sc.dy.data();
    T* AT = sc.AT.data();
    T* dA = sc.dA.data();
    transpose(A, AT);
    // dv[c][s] = sum_p dy[c][p] A[s][p]; dA[s][p] = sum_c v[c][s] dy[c][p]
    rows(dy, P, 1, AT, P, dv, g.d, false);
    rows(v, 1, P, dy, g.d, dA, P, false);
    // softmax backward: dL[s][p] = A (dA - sum_s' A dA), in dA
    RowT sm = RowT::zero();
    for (int s = 0; s < P; ++s) {
      const RowT da = RowT::load(dA + s * P);
      const RowT a = RowT::load(A + s * P);
      for (int n = 0; n < RowT::NV; ++n) sm.v[n] += a.v[n] * da.v[n];
    }
    for (int s = 0; s < P; ++s) {
      RowT da = RowT::load(dA + s * P);
      const RowT a = RowT::load(A + s * P);
      for (int n = 0; n < RowT::NV; ++n) da.v[n] = a.v[n] * (da.v[n] - sm.v[n]);
      da.store(dA + s * P);
    }
    const T* dL = dA;
    transpose(dL, AT);
    // dq[c][p] = sum_s k[c][s] dL[s][p]; dk[c][s] = sum_p q[c][p] dL[s][p]
    rows(k, P, 1, dL, P, dq, g.d, false);
    rows(q, P, 1, AT, P, dk, g.d, false);
    // relative terms: grow[t][p] = sum of dL[s][p] over keys s of row
    // offset t from p (gcol: column offset)
    T* grow = sc.grow.data();
    T* gcol = sc.gcol.data();
    T* rowsum = sc.rowpart.data();  // sum of dL over a key row / column
    T* colsum = sc.colpart.data();
    for (int a = 0; a < BLK; ++a) {
      RowT r = RowT::zero(), c = RowT::zero();
      for (int b = 0; b < BLK; ++b) {
        const RowT lr = RowT::load(dL + (a * BLK + b) * P);
        const RowT lc = RowT::load(dL + (b * BLK + a) * P);
        for (int n = 0; n < RowT::NV; ++n) {
          r.v[n] += lr.v[n];
          c.v[n] += lc.v[n];
        }
      }
      r.store(rowsum + a * P);
      c.store(colsum + a * P);
    }
    scatter_offsets(rowsum, sc.masks.row.data(), grow);
    scatter_offsets(colsum, sc.masks.col.data(), gcol);
    // dq[c] += sum_t emb[t][c] g(row|col)[t]; the embeddings' gradients
    // per position: acc[t][c] += g[t] * q[c]
    rows(rr, 1, g.half, grow, R, dq, g.half, true);
    rows(rc, 1, g.half, gcol, R, dq + g.half * P, g.half, true);
    for (int t = 0; t < R; ++t) {
      const RowT gr = RowT::load(grow + t * P);
      const RowT gc = RowT::load(gcol + t * P);
      for (int64_t c = 0; c < g.half; ++c) {
        const RowT qr = RowT::load(q + c * P);
        const RowT qc = RowT::load(q + (g.half + c) * P);
        RowT ar = RowT::load(accr + (t * g.half + c) * P);
        RowT ac = RowT::load(accc + (t * g.half + c) * P);
        for (int n = 0; n < RowT::NV; ++n) {
          ar.v[n] += gr.v[n] * qr.v[n];
          ac.v[n] += gc.v[n] * qc.v[n];
        }
        ar.store(accr + (t * g.half + c) * P);
        ac.store(accc + (t * g.half + c) * P);
      }
    }
  }

  // Position of the pooled value in the recomputed y (P values): the first
  // equal one (branch-free), else, should rounding ever differ, the nearest.
  static int pooled_position(const T* y, T pooled) {
    uint64_t hits = 0;
    for (int p = 0; p < P; ++p)
      hits |= static_cast<uint64_t>(y[p] == pooled) << p;
    if (__builtin_expect(hits != 0, 1)) return __builtin_ctzll(hits);
    return nearest_position(y, pooled);
  }

  __attribute__((noinline)) static int nearest_position(const T* y,
                                                        T pooled) {
    int best = 0;
    for (int p = 1; p < P; ++p)
      if (std::abs(y[p] - pooled) < std::abs(y[best] - pooled)) best = p;
    return best;
  }

  // Per-thread gradient accumulators, each summed over its last (P) axis
  // at the end: wq, wk (C, Cin, P), wvt (C, Cin, P), rel (2, R, half, P).
  struct Accumulators {
    std::vector<T> wq, wk, wv, rel;
    explicit Accumulators(const StemGeometry& g)
        : wq(g.C * g.Cin * P, 0), wk(g.C * g.Cin * P, 0),
          wv(g.C * g.Cin * P, 0), rel(2 * R * g.half * P, 0) {}
  };

  // The projections' gradients of a patch row, in registers over its
  // patches: dW[c][i][p] += sum_patches d(q|k|v)[c][p] x[i][p], input
  // channels in groups of up to kInGroup (each patch's q/k/v gradient rows
  // loaded once per group).
  static constexpr int kInGroup = 3;
  template <int NI>
  void project_grads_group(const Scratch& sc, Accumulators& a, int64_t c,
                           int64_t i0) const {
    const T* __restrict__ rx = sc.rx.data();
    const T* __restrict__ rdq = sc.rdq.data();
    const T* __restrict__ rdk = sc.rdk.data();
    const T* __restrict__ rdv = sc.rdv.data();
    const int64_t cp = g.C * P, ip = g.Cin * P;
    RowT aq[NI], ak[NI], av[NI];
    for (int n = 0; n < NI; ++n) aq[n] = ak[n] = av[n] = RowT::zero();
    for (int64_t pw = 0; pw < g.nw; ++pw) {
      const RowT dqc = RowT::load(rdq + pw * cp + c * P);
      const RowT dkc = RowT::load(rdk + pw * cp + c * P);
      const RowT dvc = RowT::load(rdv + pw * cp + c * P);
      for (int n = 0; n < NI; ++n) {
        const RowT xi = RowT::load(rx + pw * ip + (i0 + n) * P);
        for (int l = 0; l < RowT::NV; ++l) {
          aq[n].v[l] += dqc.v[l] * xi.v[l];
          ak[n].v[l] += dkc.v[l] * xi.v[l];
          av[n].v[l] += dvc.v[l] * xi.v[l];
        }
      }
    }
    T* __restrict__ awq = a.wq.data();
    T* __restrict__ awk = a.wk.data();
    T* __restrict__ awv = a.wv.data();
    for (int n = 0; n < NI; ++n) {
      const int64_t j = (c * g.Cin + i0 + n) * P;
      RowT q = RowT::load(awq + j), k = RowT::load(awk + j),
           v = RowT::load(awv + j);
      for (int l = 0; l < RowT::NV; ++l) {
        q.v[l] += aq[n].v[l];
        k.v[l] += ak[n].v[l];
        v.v[l] += av[n].v[l];
      }
      q.store(awq + j);
      k.store(awk + j);
      v.store(awv + j);
    }
  }

  void project_grads(const Scratch& sc, Accumulators& a) const {
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t i0 = 0; i0 < g.Cin; i0 += kInGroup)
        switch (std::min<int64_t>(kInGroup, g.Cin - i0)) {
          case 3: project_grads_group<3>(sc, a, c, i0); break;
          case 2: project_grads_group<2>(sc, a, c, i0); break;
          default: project_grads_group<1>(sc, a, c, i0); break;
        }
  }

  void backward(const T* gz, const T* ysel, const T* alpha,
                const T* beta, const T* gamma, T* dx, T* dwq, T* dwk,
                T* dwvt, T* drr, T* drc) const {
    const int64_t plane = g.nh * g.nw;
    const int nthreads = at::get_num_threads();
    std::vector<Accumulators> acc(nthreads, Accumulators(g));
    for_each_patch(true, [&](int64_t bb, int64_t ph, int64_t pw,
                             Scratch& sc) {
      Accumulators& a = acc[at::get_thread_num()];
      const int64_t cp = g.C * P;
      T* dq = sc.rdq.data() + pw * cp;
      T* dk = sc.rdk.data() + pw * cp;
      T* dv = sc.rdv.data() + pw * cp;
      std::memcpy(sc.rx.data() + pw * g.Cin * P, sc.xp.data(),
                  g.Cin * P * sizeof(T));
      for (int64_t h = 0; h < g.heads; ++h) {
        const int64_t off = h * g.d * P;
        head_output(h, sc);
        for (int64_t c = 0; c < g.d; ++c) {
          const int64_t ch = h * g.d + c;
          const T* yc = sc.y.data() + c * P;
          T* dyc = sc.dy.data() + c * P;
          const T b = beta[ch], gm = gamma[ch];
          RowT dyr = RowT::load(yc);
          for (int n = 0; n < RowT::NV; ++n) dyr.v[n] = b + gm * dyr.v[n];
          dyr.store(dyc);
          const int64_t o = (bb * g.C + ch) * plane + ph * g.nw + pw;
          dyc[pooled_position(yc, ysel[o])] += alpha[ch] * gz[o];
        }
        head_backward(sc.q.data() + off, sc.k.data() + off,
                      sc.v.data() + off, sc, dq + off, dk + off, dv + off,
                      a.rel.data(), a.rel.data() + R * g.half * P);
      }
      if (dx != nullptr) {
        // dx[i] = sum_c wq[c][i] dq[c] + wk[c][i] dk[c] + wv[c][i] * dv[c]
        T* gx = sc.dxp.data();
        rows(wq, 1, g.Cin, dq, g.C, gx, g.Cin, false);
        rows(wk, 1, g.Cin, dk, g.C, gx, g.Cin, true);
        for (int64_t i = 0; i < g.Cin; ++i) {
          RowT gi = RowT::load(gx + i * P);
          for (int64_t c = 0; c < g.C; ++c) {
            const RowT wv = RowT::load(wvt + (c * g.Cin + i) * P);
            const RowT dvc = RowT::load(dv + c * P);
            for (int n = 0; n < RowT::NV; ++n) gi.v[n] += wv.v[n] * dvc.v[n];
          }
          gi.store(gx + i * P);
          for (int py = 0; py < BLK; ++py)
            std::memcpy(dx + ((bb * g.Cin + i) * g.H + ph * BLK + py) * g.W +
                            pw * BLK,
                        gx + i * P + py * BLK, BLK * sizeof(T));
        }
      }
      if (pw == g.nw - 1) project_grads(sc, a);
    });
    const int64_t n = g.C * g.Cin;
    for (const Accumulators& a : acc) {
      for (int64_t j = 0; j < n; ++j) {
        T sq = 0, sk = 0;
        for (int p = 0; p < P; ++p) {
          sq += a.wq[j * P + p];
          sk += a.wk[j * P + p];
        }
        dwq[j] += sq;
        dwk[j] += sk;
      }
      for (int64_t j = 0; j < n * P; ++j) dwvt[j] += a.wv[j];
      for (int64_t j = 0; j < R * g.half; ++j) {
        T sr = 0, sc = 0;
        for (int p = 0; p < P; ++p) {
          sr += a.rel[j * P + p];
          sc += a.rel[(R * g.half + j) * P + p];
        }
        drr[j] += sr;
        drc[j] += sc;
      }
    }
  }
};

StemGeometry geometry(const at::Tensor& x, const at::Tensor& wq,
                      const at::Tensor& wvt, const at::Tensor& rel_row,
                      int64_t heads, int64_t block) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(),
              "x must be a contiguous (B, Cin, H, W) tensor");
  TORCH_CHECK(x.size(2) % block == 0 && x.size(3) % block == 0,
              "H and W must be multiples of the block");
  const int64_t C = wq.size(0), Cin = x.size(1), P = block * block;
  TORCH_CHECK(wq.dim() == 2 && wq.size(1) == Cin && wvt.dim() == 3 &&
                  wvt.size(0) == C && wvt.size(1) == Cin &&
                  wvt.size(2) == P,
              "weights must be (C, Cin) and (C, Cin, block^2)");
  TORCH_CHECK(C % (2 * heads) == 0, "C must be divisible by 2 * heads");
  TORCH_CHECK(rel_row.size(0) == 2 * block - 1 &&
                  2 * rel_row.size(1) == C / heads,
              "rel_row / rel_col must be (2 block - 1, d / 2)");
  return StemGeometry{x.size(0), Cin, C, heads, C / heads, C / heads / 2,
                      x.size(2) / block, x.size(3) / block, x.size(2),
                      x.size(3)};
}

// Runs fn(StemKernel<scalar_t, BLK>) for the supported blocks.
template <typename Fn>
void dispatch(const at::Tensor& x, const at::Tensor& wq, const at::Tensor& wk,
              const at::Tensor& wvt, const at::Tensor& rr,
              const at::Tensor& rc, const StemGeometry& g, int64_t block,
              Fn fn) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "attention_stem", [&] {
    auto run = [&](auto blk) {
      constexpr int BLK = decltype(blk)::value;
      const StemKernel<scalar_t, BLK> kernel{
          g, x.data_ptr<scalar_t>(), wq.data_ptr<scalar_t>(),
          wk.data_ptr<scalar_t>(), wvt.data_ptr<scalar_t>(),
          rr.data_ptr<scalar_t>(), rc.data_ptr<scalar_t>()};
      fn(kernel);
    };
    switch (block) {
      case 4: run(std::integral_constant<int, 4>()); break;
      case 8: run(std::integral_constant<int, 8>()); break;
      default: TORCH_CHECK(false, "block must be 4 or 8, got ", block);
    }
  });
}

std::vector<at::Tensor> contiguous(std::vector<at::Tensor> ts) {
  for (auto& t : ts) t = t.contiguous();
  return ts;
}

}  // namespace

std::vector<at::Tensor> attention_stem_forward(at::Tensor x, at::Tensor wq,
                                               at::Tensor wk, at::Tensor wvt,
                                               at::Tensor rel_row,
                                               at::Tensor rel_col,
                                               int64_t heads, int64_t block) {
  auto in = contiguous({x, wq, wk, wvt, rel_row, rel_col});
  const StemGeometry g = geometry(in[0], in[1], in[3], in[4], heads, block);
  auto opts = x.options().dtype(at::kDouble);
  auto s1 = at::zeros({g.C}, opts), s2 = at::zeros({g.C}, opts);
  auto ymax = at::empty({g.B, g.C, g.nh, g.nw}, x.options());
  auto ymin = at::empty_like(ymax);
  dispatch(in[0], in[1], in[2], in[3], in[4], in[5], g, block,
           [&](const auto& kernel) {
             using T = std::remove_const_t<
                 std::remove_pointer_t<decltype(kernel.x)>>;
             kernel.forward(s1.data_ptr<double>(), s2.data_ptr<double>(),
                            ymax.data_ptr<T>(), ymin.data_ptr<T>());
           });
  return {s1, s2, ymax, ymin};
}

std::vector<at::Tensor> attention_stem_backward(
    at::Tensor x, at::Tensor wq, at::Tensor wk, at::Tensor wvt,
    at::Tensor rel_row, at::Tensor rel_col, at::Tensor gz, at::Tensor ysel,
    at::Tensor alpha, at::Tensor beta, at::Tensor gamma, int64_t heads,
    int64_t block, bool need_dx) {
  auto in = contiguous(
      {x, wq, wk, wvt, rel_row, rel_col, gz, ysel, alpha, beta, gamma});
  const StemGeometry g = geometry(in[0], in[1], in[3], in[4], heads, block);
  auto dx = need_dx ? at::empty_like(in[0]) : at::Tensor();
  auto dwq = at::zeros_like(in[1]), dwk = at::zeros_like(in[2]);
  auto dwvt = at::zeros_like(in[3]);
  auto drr = at::zeros_like(in[4]), drc = at::zeros_like(in[5]);
  dispatch(in[0], in[1], in[2], in[3], in[4], in[5], g, block,
           [&](const auto& kernel) {
             using T = std::remove_const_t<
                 std::remove_pointer_t<decltype(kernel.x)>>;
             kernel.backward(in[6].data_ptr<T>(), in[7].data_ptr<T>(),
                             in[8].data_ptr<T>(), in[9].data_ptr<T>(),
                             in[10].data_ptr<T>(),
                             need_dx ? dx.data_ptr<T>() : nullptr,
                             dwq.data_ptr<T>(), dwk.data_ptr<T>(),
                             dwvt.data_ptr<T>(), drr.data_ptr<T>(),
                             drc.data_ptr<T>());
           });
  if (!need_dx) dx = at::zeros({0}, x.options());
  return {dx, dwq, dwk, dwvt, drr, drc};
}
