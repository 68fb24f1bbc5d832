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
// Two passes (ops/attention_stem.py composes them):
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
// (GCC vectors of 8; P = 16 or 64, blocks 4 and 8); one task per (image,
// patch row) through at::parallel_for (OpenMP).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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
  // this += s * row at p
  void fma(T s, const T* p) {
    for (int n = 0; n < NV; ++n) v[n] += s * loadu(p + n * kLanes);
  }
};

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

  // One thread's buffers: q, k, v of all C channels of one patch (C rows of
  // P), and the per-head temporaries.
  struct Scratch {
    std::vector<T> xp, q, k, v, y, A, AT, dA, rowdot, coldot, grow, gcol,
        dq, dk, dv, dy;
    explicit Scratch(const StemGeometry& g)
        : xp(g.Cin * P), q(g.C * P), k(g.C * P), v(g.C * P), y(g.d * P),
          A(P * P), AT(P * P), dA(P * P), rowdot(R * P), coldot(R * P),
          grow(R * P), gcol(R * P), dq(g.C * P), dk(g.C * P), dv(g.C * P),
          dy(g.d * P) {}
  };

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
  void project(const T* xp, T* q, T* k, T* v) const {
    for (int64_t c = 0; c < g.C; ++c) {
      RowT qc = RowT::zero(), kc = RowT::zero(), vc = RowT::zero();
      for (int64_t i = 0; i < g.Cin; ++i) {
        const RowT xi = RowT::load(xp + i * P);
        const RowT wv = RowT::load(wvt + (c * g.Cin + i) * P);
        const T a = wq[c * g.Cin + i], b = wk[c * g.Cin + i];
        for (int n = 0; n < RowT::NV; ++n) {
          qc.v[n] += a * xi.v[n];
          kc.v[n] += b * xi.v[n];
          vc.v[n] += wv.v[n] * xi.v[n];
        }
      }
      qc.store(q + c * P);
      kc.store(k + c * P);
      vc.store(v + c * P);
    }
  }

  // Softmax weights A[s][p] (key s, query p) of one head: q, k are the
  // head's d rows of P.
  void weights(const T* q, const T* k, Scratch& sc) const {
    T* A = sc.A.data();
    T* rowdot = sc.rowdot.data();
    T* coldot = sc.coldot.data();
    for (int t = 0; t < R; ++t) {
      RowT dr = RowT::zero(), dc = RowT::zero();
      for (int64_t c = 0; c < g.half; ++c) {
        dr.fma(rr[t * g.half + c], q + c * P);
        dc.fma(rc[t * g.half + c], q + (g.half + c) * P);
      }
      dr.store(rowdot + t * P);
      dc.store(coldot + t * P);
    }
    for (int s = 0; s < P; ++s) {
      T* a = A + s * P;
      const int sy = s / BLK, sx = s % BLK;
      for (int py = 0; py < BLK; ++py)
        for (int px = 0; px < BLK; ++px)
          a[py * BLK + px] = rowdot[(sy - py + BLK - 1) * P + py * BLK + px] +
                             coldot[(sx - px + BLK - 1) * P + py * BLK + px];
    }
    RowT mx;
    for (int s = 0; s < P; ++s) {
      RowT a = RowT::load(A + s * P);
      for (int64_t c = 0; c < g.d; ++c) a.fma(k[c * P + s], q + c * P);
      a.store(A + s * P);
      for (int n = 0; n < RowT::NV; ++n)
        mx.v[n] = s == 0 ? a.v[n] : (a.v[n] > mx.v[n] ? a.v[n] : mx.v[n]);
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
    for (int64_t c = 0; c < g.d; ++c) {
      RowT yc = RowT::zero();
      const T* vc = v + c * P;
      for (int s = 0; s < P; ++s) yc.fma(vc[s], A + s * P);
      yc.store(y + c * P);
    }
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
  void for_each_patch(Fn fn) const {
    at::parallel_for(0, g.B * g.nh, 1, [&](int64_t begin, int64_t end) {
      Scratch sc(g);
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
    for_each_patch([&](int64_t bb, int64_t ph, int64_t pw, Scratch& sc) {
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
  void head_backward(const T* q, const T* k, const T* v, Scratch& sc, T* dq,
                     T* dk, T* dv, T* accr, T* accc) const {
    const T* A = sc.A.data();
    const T* dy = sc.dy.data();
    T* AT = sc.AT.data();
    T* dA = sc.dA.data();
    for (int s = 0; s < P; ++s)
      for (int p = 0; p < P; ++p) AT[p * P + s] = A[s * P + p];
    // dv[c][s] = sum_p dy[c][p] A[s][p]; dA[s][p] = sum_c v[c][s] dy[c][p]
    for (int64_t c = 0; c < g.d; ++c) {
      RowT dvc = RowT::zero();
      const T* dyc = dy + c * P;
      for (int p = 0; p < P; ++p) dvc.fma(dyc[p], AT + p * P);
      dvc.store(dv + c * P);
    }
    // softmax backward: dL[s][p] = A (dA - sum_s' A dA), in dA
    RowT sm = RowT::zero();
    for (int s = 0; s < P; ++s) {
      RowT da = RowT::zero();
      for (int64_t c = 0; c < g.d; ++c) da.fma(v[c * P + s], dy + c * P);
      const RowT a = RowT::load(A + s * P);
      for (int n = 0; n < RowT::NV; ++n) sm.v[n] += a.v[n] * da.v[n];
      da.store(dA + s * P);
    }
    for (int s = 0; s < P; ++s) {
      RowT da = RowT::load(dA + s * P);
      const RowT a = RowT::load(A + s * P);
      for (int n = 0; n < RowT::NV; ++n) da.v[n] = a.v[n] * (da.v[n] - sm.v[n]);
      da.store(dA + s * P);
    }
    const T* dL = dA;
    for (int s = 0; s < P; ++s)
      for (int p = 0; p < P; ++p) AT[p * P + s] = dL[s * P + p];
    // dq[c][p] = sum_s k[c][s] dL[s][p]; dk[c][s] = sum_p q[c][p] dL[s][p]
    for (int64_t c = 0; c < g.d; ++c) {
      RowT dqc = RowT::zero(), dkc = RowT::zero();
      const T* kc = k + c * P;
      const T* qc = q + c * P;
      for (int s = 0; s < P; ++s) dqc.fma(kc[s], dL + s * P);
      for (int p = 0; p < P; ++p) dkc.fma(qc[p], AT + p * P);
      dqc.store(dq + c * P);
      dkc.store(dk + c * P);
    }
    // relative terms: grow[t][p] = sum of dL[s][p] over keys s of row
    // offset t from p (gcol: column offset)
    T* grow = sc.grow.data();
    T* gcol = sc.gcol.data();
    std::fill(grow, grow + R * P, T(0));
    std::fill(gcol, gcol + R * P, T(0));
    for (int s = 0; s < P; ++s) {
      const int sy = s / BLK, sx = s % BLK;
      const T* dl = dL + s * P;
      for (int py = 0; py < BLK; ++py)
        for (int px = 0; px < BLK; ++px) {
          const int p = py * BLK + px;
          grow[(sy - py + BLK - 1) * P + p] += dl[p];
          gcol[(sx - px + BLK - 1) * P + p] += dl[p];
        }
    }
    for (int t = 0; t < R; ++t) {
      const RowT gr = RowT::load(grow + t * P);
      const RowT gc = RowT::load(gcol + t * P);
      for (int64_t c = 0; c < g.half; ++c) {
        const T er = rr[t * g.half + c], ec = rc[t * g.half + c];
        T* dqr = dq + c * P;
        T* dqc = dq + (g.half + c) * P;
        const RowT qr = RowT::load(q + c * P);
        const RowT qc = RowT::load(q + (g.half + c) * P);
        RowT ar = RowT::load(accr + (t * g.half + c) * P);
        RowT ac = RowT::load(accc + (t * g.half + c) * P);
        RowT dr = RowT::load(dqr), dc = RowT::load(dqc);
        for (int n = 0; n < RowT::NV; ++n) {
          dr.v[n] += er * gr.v[n];
          dc.v[n] += ec * gc.v[n];
          ar.v[n] += gr.v[n] * qr.v[n];
          ac.v[n] += gc.v[n] * qc.v[n];
        }
        dr.store(dqr);
        dc.store(dqc);
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
    if (hits) return __builtin_ctzll(hits);
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

  void backward(const T* gz, const T* ysel, const T* alpha,
                const T* beta, const T* gamma, T* dx, T* dwq, T* dwk,
                T* dwvt, T* drr, T* drc) const {
    const int64_t plane = g.nh * g.nw;
    const int nthreads = at::get_num_threads();
    std::vector<Accumulators> acc(nthreads, Accumulators(g));
    for_each_patch([&](int64_t bb, int64_t ph, int64_t pw, Scratch& sc) {
      Accumulators& a = acc[at::get_thread_num()];
      for (int64_t h = 0; h < g.heads; ++h) {
        const int64_t off = h * g.d * P;
        head_output(h, sc);
        for (int64_t c = 0; c < g.d; ++c) {
          const int64_t ch = h * g.d + c;
          const T* yc = sc.y.data() + c * P;
          T* dyc = sc.dy.data() + c * P;
          const T b = beta[ch], gm = gamma[ch];
          for (int p = 0; p < P; ++p) dyc[p] = b + gm * yc[p];
          const int64_t o = (bb * g.C + ch) * plane + ph * g.nw + pw;
          dyc[pooled_position(yc, ysel[o])] += alpha[ch] * gz[o];
        }
        head_backward(sc.q.data() + off, sc.k.data() + off,
                      sc.v.data() + off, sc, sc.dq.data() + off,
                      sc.dk.data() + off, sc.dv.data() + off, a.rel.data(),
                      a.rel.data() + R * g.half * P);
      }
      // projections: dW[c][i][p] += d(q|k|v)[c][p] x[i][p]
      const T* xp = sc.xp.data();
      for (int64_t c = 0; c < g.C; ++c) {
        const RowT dqc = RowT::load(sc.dq.data() + c * P);
        const RowT dkc = RowT::load(sc.dk.data() + c * P);
        const RowT dvc = RowT::load(sc.dv.data() + c * P);
        for (int64_t i = 0; i < g.Cin; ++i) {
          const RowT xi = RowT::load(xp + i * P);
          const int64_t j = (c * g.Cin + i) * P;
          RowT aq = RowT::load(&a.wq[j]), ak = RowT::load(&a.wk[j]),
               av = RowT::load(&a.wv[j]);
          for (int n = 0; n < RowT::NV; ++n) {
            aq.v[n] += dqc.v[n] * xi.v[n];
            ak.v[n] += dkc.v[n] * xi.v[n];
            av.v[n] += dvc.v[n] * xi.v[n];
          }
          aq.store(&a.wq[j]);
          ak.store(&a.wk[j]);
          av.store(&a.wv[j]);
        }
      }
      if (dx == nullptr) return;
      for (int64_t i = 0; i < g.Cin; ++i) {
        RowT gx = RowT::zero();
        for (int64_t c = 0; c < g.C; ++c) {
          const RowT wv = RowT::load(wvt + (c * g.Cin + i) * P);
          const RowT dvc = RowT::load(sc.dv.data() + c * P);
          gx.fma(wq[c * g.Cin + i], sc.dq.data() + c * P);
          gx.fma(wk[c * g.Cin + i], sc.dk.data() + c * P);
          for (int n = 0; n < RowT::NV; ++n) gx.v[n] += wv.v[n] * dvc.v[n];
        }
        T rows[P];
        gx.store(rows);
        for (int py = 0; py < BLK; ++py)
          std::memcpy(dx + ((bb * g.Cin + i) * g.H + ph * BLK + py) * g.W +
                          pw * BLK,
                      rows + py * BLK, BLK * sizeof(T));
      }
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
