// Elastic consistency (biomatch's addition, a second stage as in elastic / Bozorth-like
// matchers): each of the best LSS-R pairs in turn anchors an alignment (its minutiae
// superposed, its direction difference as rotation); the other minutiae agree within a
// tolerance growing with their distance from the anchor.  The anchor pairing the most minutiae
// wins; elastic = n_e^2 / (overlap_a * overlap_b).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "hull.hpp"
#include "mcc_internal.hpp"
#include "stages.hpp"

namespace biomatch::detail {
namespace {

// W lanes of B minutiae at a time: one vector register of the module's instruction set, 4 (SSE,
// the baseline x86-64 target), 8 (the avx2 module) or 16 (the avx512 module).  Element-wise
// IEEE operations: the same bits for any W.
template <int W> struct Lanes;
template <> struct Lanes<4> {
  typedef float f __attribute__((vector_size(16)));
  typedef int32_t i __attribute__((vector_size(16)));
};
template <> struct Lanes<8> {
  typedef float f __attribute__((vector_size(32)));
  typedef int32_t i __attribute__((vector_size(32)));
};
template <> struct Lanes<16> {
  typedef float f __attribute__((vector_size(64)));
  typedef int32_t i __attribute__((vector_size(64)));
};

// One anchor's alignment of A onto B, and B's minutiae as the count loops read them.
struct Alignment {
  float ax, ay, bx, by;   // the anchor's minutiae
  float c, sn;            // cos, sin of the rotation
  float d0, f, cos_max;   // tolerance d0 + f * (distance from the anchor); direction tolerance
  const float* da;        // A's distances from the anchor minutia
  int nb, npad;           // B's minutiae, padded count (a multiple of 16)
  const float* xb;        // b.soa: x, y, cos, sin of B, each padded to npad (padding far away,
  const float* yb;        // never agrees)
  const float* cb;
  const float* sb;
  Alignment(const MccParams& p, const Prepared& a, const Prepared& b, int ia, int ib, float c_, float sn_,
            float cos_max_)
      : ax(a.x[ia]), ay(a.y[ia]), bx(b.x[ib]), by(b.y[ib]), c(c_), sn(sn_), d0(p.elastic_distance_px),
        f(p.elastic_distance_fraction), cos_max(cos_max_), da(&a.dist[size_t(ia) * a.n]), nb(b.n), npad(b.npad),
        xb(b.soa.data()), yb(b.soa.data() + b.npad), cb(b.soa.data() + 2 * size_t(b.npad)),
        sb(b.soa.data() + 3 * size_t(b.npad)) {}
};

// The candidate keys (relative error bits << 32 | a << 16 | b) of the rows of A, ek[0, ne), and
// the number of rows (minutiae of A) with at least one candidate.  cut: the count stopped as
// soon as `beat` could not be exceeded, and rows is then that bound.
struct ElasticRows {
  int rows = 0;
  size_t ne = 0;
  bool cut = false;
};

#ifdef BIOMATCH_HAVE_AVX512
// One row of elastic_count_w<16> fused: the relative errors of minutia (X, Y, direction cT, sT)
// of A against every B minutia (the same operations as the vector-extension loop there), and
// the keys of the agreeing j (rel <= 1 and directions within cos_max), in order, written from
// out on (whole vectors of 8: up to 8 entries past the last key are overwritten).  Returns the end.
inline uint64_t* elastic_row_avx512(const float* xb, const float* yb, const float* cb, const float* sb, int nb, float X,
                                    float Y, float inv_tol2, float cT, float sT, float cos_max, int i, uint64_t* out) {
  const __m512 vX = _mm512_set1_ps(X), vY = _mm512_set1_ps(Y), vinv = _mm512_set1_ps(inv_tol2);
  const __m512 vcT = _mm512_set1_ps(cT), vsT = _mm512_set1_ps(sT), vcm = _mm512_set1_ps(cos_max);
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512i hi = _mm512_set1_epi64(int64_t(i) << 16);
  __m512i j8 = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i eight = _mm512_set1_epi64(8);
  for (int j0 = 0; j0 < nb; j0 += 16) {
    const int left = nb - j0;
    const __mmask16 live = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const __m512 ex = _mm512_sub_ps(_mm512_loadu_ps(xb + j0), vX), ey = _mm512_sub_ps(_mm512_loadu_ps(yb + j0), vY);
    const __m512 r = _mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(ex, ex), _mm512_mul_ps(ey, ey)), vinv);
    const __m512 dot =
        _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(cb + j0), vcT), _mm512_mul_ps(_mm512_loadu_ps(sb + j0), vsT));
    const __mmask16 ok = _mm512_mask_cmp_ps_mask(live, dot, vcm, _CMP_GE_OQ);
    const __mmask16 keep = _mm512_mask_cmp_ps_mask(ok, r, one, _CMP_LE_OQ);
    if (!keep) {
      j8 = _mm512_add_epi64(j8, _mm512_add_epi64(eight, eight));
      continue;
    }
    const __m512i rb = _mm512_castps_si512(r);
    const __m512i k0 = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(rb)), 32),
                                       _mm512_or_si512(hi, j8));
    j8 = _mm512_add_epi64(j8, eight);
    const __m512i k1 = _mm512_or_si512(
        _mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(rb, 1)), 32), _mm512_or_si512(hi, j8));
    j8 = _mm512_add_epi64(j8, eight);
    const __mmask8 m0 = __mmask8(keep & 0xff), m1 = __mmask8(keep >> 8);
    _mm512_storeu_si512(out, _mm512_maskz_compress_epi64(m0, k0));
    out += __builtin_popcount(m0);
    _mm512_storeu_si512(out, _mm512_maskz_compress_epi64(m1, k1));
    out += __builtin_popcount(m1);
  }
  return out;
}
#endif

#ifdef BIOMATCH_HAVE_AVX512
// The rows of elastic_count for W = 16: first, for every minutia of A (16 at a time; per
// element the same operations as elastic_rows_w): its position and direction under the
// alignment and 1 / tol^2, and whether it lies within reach of B's bounding box; then only
// those rows, in order (the others have no candidate, so the bound rows + rows left counts
// only these).
ElasticRows elastic_rows_avx512(const Alignment& al, const Prepared& a, const Prepared& b, Scratch& s, int beat,
                                uint64_t* ek) {
  ElasticRows out;
  const float ax = al.ax, ay = al.ay, bx = al.bx, by = al.by, c = al.c, sn = al.sn, d0 = al.d0, f = al.f;
  const float* da = al.da;
  const int na = a.n;
  if (s.erow.size() < size_t(5) * na) s.erow.resize(size_t(5) * na);
  if (s.eidx.size() < size_t(na) + 16) s.eidx.resize(size_t(na) + 16);
  float* __restrict RX = s.erow.data();
  float* __restrict RY = RX + na;
  float* __restrict RI = RY + na;
  float* __restrict RC = RI + na;
  float* __restrict RS = RC + na;
  int* __restrict idx = s.eidx.data();
  // (The compiler left the scalar form of this loop scalar.)  The rows within reach are
  // compressed into idx as they come.
  const __m512 vax = _mm512_set1_ps(ax), vay = _mm512_set1_ps(ay), vbx = _mm512_set1_ps(bx), vby = _mm512_set1_ps(by);
  const __m512 vc = _mm512_set1_ps(c), vsn = _mm512_set1_ps(sn), vd0 = _mm512_set1_ps(d0), vf = _mm512_set1_ps(f);
  const __m512 x0 = _mm512_set1_ps(b.bbox[0]), y0 = _mm512_set1_ps(b.bbox[1]);
  const __m512 x1 = _mm512_set1_ps(b.bbox[2]), y1 = _mm512_set1_ps(b.bbox[3]);
  const __m512 one = _mm512_set1_ps(1.f), margin = _mm512_set1_ps(1.001f), eps = _mm512_set1_ps(1e-3f);
  __m512i vi = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int nin = 0;
  for (int i = 0; i < na; i += 16) {
    const __mmask16 live = na - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (na - i)) - 1);
    const __m512 dx = _mm512_sub_ps(_mm512_maskz_loadu_ps(live, a.x.data() + i), vax);
    const __m512 dy = _mm512_sub_ps(_mm512_maskz_loadu_ps(live, a.y.data() + i), vay);
    const __m512 X = _mm512_sub_ps(_mm512_add_ps(vbx, _mm512_mul_ps(vc, dx)), _mm512_mul_ps(vsn, dy));
    const __m512 Y = _mm512_add_ps(_mm512_add_ps(vby, _mm512_mul_ps(vsn, dx)), _mm512_mul_ps(vc, dy));
    const __m512 tol = _mm512_add_ps(vd0, _mm512_mul_ps(vf, _mm512_maskz_loadu_ps(live, da + i)));
    // Farther than the tolerance from B's bounding box (with a rounding margin): no candidate.
    const __m512 reach = _mm512_add_ps(_mm512_mul_ps(margin, tol), eps);
    const __mmask16 far = _mm512_cmp_ps_mask(X, _mm512_sub_ps(x0, reach), _CMP_LT_OQ) |
                          _mm512_cmp_ps_mask(X, _mm512_add_ps(x1, reach), _CMP_GT_OQ) |
                          _mm512_cmp_ps_mask(Y, _mm512_sub_ps(y0, reach), _CMP_LT_OQ) |
                          _mm512_cmp_ps_mask(Y, _mm512_add_ps(y1, reach), _CMP_GT_OQ);
    const __m512 cs = _mm512_maskz_loadu_ps(live, a.cos_theta.data() + i);
    const __m512 ss = _mm512_maskz_loadu_ps(live, a.sin_theta.data() + i);
    _mm512_mask_storeu_ps(RX + i, live, X);
    _mm512_mask_storeu_ps(RY + i, live, Y);
    _mm512_mask_storeu_ps(RI + i, live,  // -1: out of reach
                          _mm512_mask_blend_ps(far, _mm512_div_ps(one, _mm512_mul_ps(tol, tol)), _mm512_set1_ps(-1.f)));
    _mm512_mask_storeu_ps(RC + i, live, _mm512_sub_ps(_mm512_mul_ps(cs, vc), _mm512_mul_ps(ss, vsn)));
    _mm512_mask_storeu_ps(RS + i, live, _mm512_add_ps(_mm512_mul_ps(ss, vc), _mm512_mul_ps(cs, vsn)));
    const __mmask16 in = live & ~far;
    _mm512_storeu_si512(idx + nin, _mm512_maskz_compress_epi32(in, vi));
    nin += __builtin_popcount(in);
    vi = _mm512_add_epi32(vi, _mm512_set1_epi32(16));
  }
  for (int u = 0; u < nin; ++u) {
    if (out.rows + (nin - u) <= beat) {
      out.rows += nin - u;
      out.cut = true;
      return out;
    }
    const int i = idx[u];
    uint64_t* const end =
        elastic_row_avx512(al.xb, al.yb, al.cb, al.sb, al.nb, RX[i], RY[i], RI[i], RC[i], RS[i], al.cos_max, i,
                           ek + out.ne);
    if (end == ek + out.ne) continue;
    ++out.rows;
    out.ne = end - ek;
  }
  return out;
}
#endif

// The rows of elastic_count, W minutiae of B at a time (GCC/Clang vector extensions).
template <int W>
__attribute__((always_inline)) inline ElasticRows elastic_rows_w(const Alignment& al, const Prepared& a,
                                                                 const Prepared& b, Scratch& s, int beat,
                                                                 uint64_t* __restrict ek) {
  typedef typename Lanes<W>::f v4;
  typedef typename Lanes<W>::i i4;
  ElasticRows out;
  const float ax = al.ax, ay = al.ay, bx = al.bx, by = al.by, c = al.c, sn = al.sn, d0 = al.d0, f = al.f;
  const float cos_max = al.cos_max;
  const float* da = al.da;
  const int nb = al.nb, nloop = (nb + W - 1) / W * W;
  float* __restrict rel = s.erel.data();
  const float* __restrict xb = al.xb;
  const float* __restrict yb = al.yb;
  const float* __restrict cb = al.cb;
  const float* __restrict sb = al.sb;
  for (int i = 0; i < a.n; ++i) {
    if (out.rows + (a.n - i) <= beat) {
      out.rows += a.n - i;
      out.cut = true;
      return out;
    }
    const float dx = a.x[i] - ax, dy = a.y[i] - ay;
    const float X = bx + c * dx - sn * dy, Y = by + sn * dx + c * dy;
    const float tol = d0 + f * da[i];
    // Farther than the tolerance from B's bounding box (with a rounding margin): no candidate.
    const float reach = 1.001f * tol + 1e-3f;
    if (X < b.bbox[0] - reach || X > b.bbox[2] + reach || Y < b.bbox[1] - reach || Y > b.bbox[3] + reach) continue;
    const float inv_tol2 = 1.f / (tol * tol);
    // Direction of minutia i turned by rot: cos/sin of theta_i + rot.
    const float cT = a.cos_theta[i] * c - a.sin_theta[i] * sn, sT = a.sin_theta[i] * c + a.cos_theta[i] * sn;
    // W minutiae of B at a time (GCC/Clang vector extensions): relative squared error, 2 when
    // the directions do not agree; > 1: no agreement.
    i4 any = {};
    const i4 two = (i4)(v4{} + 2.f);
    for (int j0 = 0; j0 < nloop; j0 += W) {
      v4 vx, vy, vc, vs;
      std::memcpy(&vx, xb + j0, sizeof vx);
      std::memcpy(&vy, yb + j0, sizeof vy);
      std::memcpy(&vc, cb + j0, sizeof vc);
      std::memcpy(&vs, sb + j0, sizeof vs);
      const v4 ex = vx - X, ey = vy - Y;
      const v4 r = (ex * ex + ey * ey) * inv_tol2;
      const i4 ok = vc * cT + vs * sT >= cos_max;  // -1 where the directions agree
      const i4 v = ((i4)r & ok) | (two & ~ok);
      std::memcpy(rel + j0, &v, sizeof v);
      any |= (v4)v <= 1.f;
    }
    uint64_t words[W / 2], hit = 0;  // OR of the lanes through memory: no per-lane extraction
    std::memcpy(words, &any, sizeof words);
    for (int k = 0; k < W / 2; ++k) hit |= words[k];
    if (!hit) continue;
    ++out.rows;
    // The keys of the agreeing j, in order (relative error bits: >= 0, so they sort like it),
    // from the blocks of W that hold one (usually one or two of them).
    for (int j0 = 0; j0 < nloop; j0 += W) {
      v4 v;
      std::memcpy(&v, rel + j0, sizeof v);
      const i4 agree = v <= 1.f;
      uint64_t lanes[W / 2], some = 0;
      std::memcpy(lanes, &agree, sizeof lanes);
      for (int k = 0; k < W / 2; ++k) some |= lanes[k];
      if (!some) continue;
      for (int j = j0, j1 = std::min(j0 + W, nb); j < j1; ++j) {  // branch-free: kept keys advance ne
        uint32_t rbits;
        std::memcpy(&rbits, &rel[j], sizeof rbits);
        ek[out.ne] = (uint64_t(rbits) << 32) | (uint32_t(i) << 16) | uint32_t(j);
        out.ne += rel[j] <= 1.f;
      }
    }
  }
  return out;
}

// Greedy one-to-one pairing of the candidate keys ek[0, r.ne) by relative error, ties to the
// lower (i, j); the pairs in s.ea, s.eb.  Returns their number.
int elastic_pairs(const Prepared& a, int nb, Scratch& s, int beat, uint64_t* ek, const ElasticRows& r) {
  const int rows = r.rows;
  const size_t ne = r.ne;
  uint64_t* const ek_end = ek + ne;  // the keys: ek[0, ne)
  s.ea.clear();
  s.eb.clear();
  s.used_b.assign(nb, 0);
  const int m = static_cast<int>(ne);
  if (beat >= 0 && m == rows) {  // one candidate per row: no conflict unless a B minutia repeats
    bool clash = false;
    for (const uint64_t* e = ek; e < ek_end; ++e) {
      const uint64_t key = *e;
      const int j = static_cast<int>(key & 0xffff);
      clash |= s.used_b[j] != 0;
      s.used_b[j] = 1;
    }
    if (!clash) {  // greedy would keep them all
      for (const uint64_t* e = ek; e < ek_end; ++e) {
        const uint64_t key = *e;
        s.ea.push_back(static_cast<int>((key >> 16) & 0xffff));
        s.eb.push_back(static_cast<int>(key & 0xffff));
      }
      return m;
    }
    s.used_b.assign(nb, 0);
  }
  // Greedy one-to-one by relative error, ties to the lower (i, j).
  std::sort(ek, ek_end);
  s.used_a.assign(a.n, 0);
  int count = 0;
  for (const uint64_t* e = ek; e < ek_end; ++e) {
    const uint64_t key = *e;
    const int i = static_cast<int>((key >> 16) & 0xffff), j = static_cast<int>(key & 0xffff);
    if (s.used_a[i] || s.used_b[j]) continue;
    s.used_a[i] = s.used_b[j] = 1;
    ++count;
    s.ea.push_back(i);
    s.eb.push_back(j);
  }
  return count;
}

// Elastic consistency about one anchor pair (ia, ib): A is turned by the anchor's direction
// difference about minutia ia and moved onto ib; two minutiae agree when their distance is at
// most d0 + f * (distance from the anchor) and their directions differ by at most the angle
// tolerance (distortion grows with the distance from the region that aligns).  Greedy
// one-to-one pairing by relative error.  Returns the number of pairs, with the pairs in
// s.ea, s.eb (in greedy order when beat < 0), when it exceeds `beat`; else some number
// <= beat (an upper bound: the stage stops as soon as `beat` cannot be exceeded).
template <int W>
__attribute__((always_inline)) inline int elastic_count_w(const MccParams& p, const Prepared& a, const Prepared& b,
                                                          int ia, int ib, Scratch& s, int beat, float c, float sn,
                                                          float cos_max) {
  const Alignment al(p, a, b, ia, ib, c, sn, cos_max);
  if (s.erel.size() < size_t(b.npad)) s.erel.resize(b.npad);
  // Keys of the agreeing pairs: at most nb per minutia of A, + 8 for whole-vector stores.
  if (s.ekeys.size() < size_t(a.n) * b.n + 8) s.ekeys.resize(size_t(a.n) * b.n + 8);  // grows only
  uint64_t* ek = s.ekeys.data();
  ElasticRows r;
#ifdef BIOMATCH_HAVE_AVX512
  if constexpr (W == 16)
    r = elastic_rows_avx512(al, a, b, s, beat, ek);
  else
#endif
    r = elastic_rows_w<W>(al, a, b, s, beat, ek);
  if (r.cut || r.rows <= beat) return r.rows;
  return elastic_pairs(a, b.n, s, beat, ek, r);
}

// c, sn: cos and sin of the alignment's rotation (B direction - A direction of the anchor, or a
// refined one), computed by the caller (once per anchor).
int elastic_count(const Config& cfg, const Prepared& a, const Prepared& b, int ia, int ib, Scratch& s, int beat,
                  float c, float sn) {
  return elastic_count_w<kFloatLanes>(cfg.params(), a, b, ia, ib, s, beat, c, sn, cfg.elastic_cos_max());
}

// Records the best anchor so far: its pairs, 1 + partner in B per minutia of A, in s.epart.
void keep_pairs(const Prepared& a, Scratch& s) {
  s.epart.assign(a.n, 0);
  for (size_t u = 0; u < s.ea.size(); ++u) s.epart[s.ea[u]] = s.eb[u] + 1;
}

// Whether the alignment of a tried anchor (E: ax, ay, bx, by, cos, sin of its rotation) maps the
// pair (qa, qb) within elastic_cluster_deg and elastic_cluster_px.
bool aligned_like(const Prepared& a, const Prepared& b, int qa, int qb, const float* E, float cl_d2, float cl_cos) {
  const float cq = a.cos_theta[qa] * E[4] - a.sin_theta[qa] * E[5], sq = a.sin_theta[qa] * E[4] + a.cos_theta[qa] * E[5];
  if (cq * b.cos_theta[qb] + sq * b.sin_theta[qb] < cl_cos) return false;
  const float dx = a.x[qa] - E[0], dy = a.y[qa] - E[1];
  const float ex = E[2] + E[4] * dx - E[5] * dy - b.x[qb], ey = E[3] + E[5] * dx + E[4] * dy - b.y[qb];
  return ex * ex + ey * ey < cl_d2;
}

// The first elastic_anchors top pairs tried as anchors.  Anchors giving about the same
// alignment as one already tried are skipped: an anchor paired under the best anchor so far
// (s.epart), or one that the alignment of a tried anchor maps within elastic_cluster_deg and
// elastic_cluster_px of its partner (relaxation favours mutually consistent pairs, so the top
// pairs come in clusters, impostors' too).
void try_anchors(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int ntop, ElasticTerm& e) {
  const MccParams& p = cfg.params();
  const int nq = std::min(p.elastic_anchors, ntop);
  const float cl_d2 = p.elastic_cluster_px * p.elastic_cluster_px, cl_cos = cfg.elastic_cluster_cos();
  int nev = 0;
  s.etried.resize(size_t(6) * nq);
  float* ev = s.etried.data();
  for (int q = 0; q < nq; ++q) {
    if (e.anchor >= 0 && s.tb[q] + 1 == s.epart[s.ta[q]]) continue;
    const int qa = s.ta[q], qb = s.tb[q];
    bool dup = false;
    for (int u = 0; u < nev && !dup; ++u) dup = aligned_like(a, b, qa, qb, ev + 6 * u, cl_d2, cl_cos);
    if (dup) continue;
    const float r = b.theta[qb] - a.theta[qa], rc = std::cos(r), rs = std::sin(r);
    if (p.elastic_cluster_px > 0) {
      float* E = ev + 6 * nev++;
      E[0] = a.x[qa]; E[1] = a.y[qa]; E[2] = b.x[qb]; E[3] = b.y[qb]; E[4] = rc; E[5] = rs;
    }
    const int c = elastic_count(cfg, a, b, qa, qb, s, e.n, rc, rs);
    if (c > e.n) {
      e.n = c;
      e.anchor = q;
      e.cos = rc;
      e.sin = rs;
      keep_pairs(a, s);
    }
  }
}

// The rotation of one minutia pair's directions is off by its direction errors (a few degrees
// move far minutiae by more than the tolerance): refit it once, in the least-squares sense about
// the anchor, on the minutiae the best anchor paired, and keep the better count.
void refit_anchor(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, ElasticTerm& e) {
  const int ia = s.ta[e.anchor], ib = s.tb[e.anchor];
  float sc = 0.f, ss = 0.f;
  for (int i = 0; i < a.n; ++i) {
    if (!s.epart[i]) continue;
    const int j = s.epart[i] - 1;
    const float ux = a.x[i] - a.x[ia], uy = a.y[i] - a.y[ia], vx = b.x[j] - b.x[ib], vy = b.y[j] - b.y[ib];
    sc += ux * vx + uy * vy;
    ss += ux * vy - uy * vx;
  }
  const float r2 = std::atan2(ss, sc);
  const float c2 = std::cos(r2), s2 = std::sin(r2);
  const int c = elastic_count(cfg, a, b, ia, ib, s, e.n, c2, s2);
  if (c > e.n) {
    e.n = c;
    e.cos = c2;
    e.sin = s2;
    keep_pairs(a, s);  // the best anchor's pairs, for the orientation term
  }
}

// Minutia reliability (biomatch's addition): a minutia of the overlap that the best anchor left
// unpaired counts 1 - w + w q (q = quality / 100; paired ones count 1): a missing partner of a
// minutia on blurred or border ridges is weaker evidence against the pair than that of a clear
// one.  `counted` is that sum over the `overlap` minutiae; the floor of `fl` minutiae is taken at
// the overlap's mean count (an absolute floor measured worse: it keeps the penalty exactly
// where the overlap is small).
inline float reliable_overlap(float counted, int overlap, float fl) {
  return overlap > 0 ? std::max(counted * std::max(1.f, fl / float(overlap)), 1e-6f) : fl;
}

// in_hull_fast(t, X, Y, margin) of the n points (X, Y) = (ox + p dx + q dy, oy + r dx + u dy),
// dx = xs[i] - cx, dy = ys[i] - cy (xs, ys padded to a multiple of 16), handed to visit(i, in)
// in order.  kFloatLanes points at a time against every edge line of t (GCC/Clang vector
// extensions, the same operations as in_hull_fast): a point farther than margin + kClear from
// one line, or at least kClear inside all of them, is decided as in_hull_fast decides it (its
// own band, 0.05 px, is narrower); the few in between are handed to in_hull_fast itself.
template <class Visit>
inline void hull_overlap(const Prepared& t, const float* xs, const float* ys, int n, float cx, float cy, float ox,
                         float oy, float p, float q, float r, float u, float margin, Visit&& visit) {
  const int m = static_cast<int>(t.hull_lines.size() / 3);
  if (m < 3) {  // in_hull_fast takes the exact test
    for (int i = 0; i < n; ++i) {
      const float dx = xs[i] - cx, dy = ys[i] - cy;
      visit(i, in_hull_fast(t, ox + p * dx + q * dy, oy + r * dx + u * dy, margin));
    }
    return;
  }
  constexpr float kClear = 0.5f;
  typedef float fv __attribute__((vector_size(4 * kFloatLanes)));
  const float* h = t.hull_lines.data();
  for (int i0 = 0; i0 < n; i0 += kFloatLanes) {
    fv x, y;
    std::memcpy(&x, xs + i0, sizeof x);
    std::memcpy(&y, ys + i0, sizeof y);
    const fv dx = x - cx, dy = y - cy;
    const fv X = ox + p * dx + q * dy, Y = oy + r * dx + u * dy;
    fv mx = fv{} - 1e30f;  // the largest signed distance to an edge line
    for (int e = 0; e < m; ++e) {
      const fv v = h[3 * e] * X + h[3 * e + 1] * Y - h[3 * e + 2];
      mx = mx < v ? v : mx;
    }
    for (int l = 0, nl = std::min(kFloatLanes, n - i0); l < nl; ++l) {
      const float v = mx[l];
      bool in = v <= -kClear;
      if (!in & !(v > margin + kClear)) in = in_hull_fast(t, X[l], Y[l], margin);  // the band: rare
      visit(i0 + l, in);
    }
  }
}

// The overlaps (minutiae of each template inside the other's hull under the best alignment,
// margin elastic_distance_px) and elastic = n_e^2 / (overlap_a * overlap_b), floor pairs_max.
// With elastic_reliability_weight w > 0 each side's overlap is counted by reliability (see
// reliable_overlap).
void elastic_score(const MccParams& p, const Prepared& a, const Prepared& b, Scratch& s, bool reliable,
                   ElasticTerm& e) {
  const int ia = s.ta[e.anchor], ib = s.tb[e.anchor];
  const float c = e.cos, sn = e.sin;
  const float m = p.elastic_distance_px;
  const float w = reliable ? p.elastic_reliability_weight : 0.f;
  float wa = 0.f, wb = 0.f;  // reliability-counted overlaps (w > 0)
  if (w > 0.f) {             // B's paired minutiae, from A's partners
    s.used_b.assign(b.n, 0);
    for (int i = 0; i < a.n; ++i)
      if (s.epart[i]) s.used_b[s.epart[i] - 1] = 1;
  }
  // A's minutiae into B's frame (turned by the rotation about the anchor), B's into A's (back).
  hull_overlap(b, a.soa.data(), a.soa.data() + a.npad, a.n, a.x[ia], a.y[ia], b.x[ib], b.y[ib], c, -sn, sn, c, m,
               [&](int i, bool in) {
                 e.overlap_a += in;
                 if (w > 0.f && in) wa += s.epart[i] ? 1.f : 1.f - w + w * reliability_of(a.quality[i]);
               });
  hull_overlap(a, b.soa.data(), b.soa.data() + b.npad, b.n, b.x[ib], b.y[ib], a.x[ia], a.y[ia], c, sn, -sn, c, m,
               [&](int j, bool in) {
                 e.overlap_b += in;
                 if (w > 0.f && in) wb += s.used_b[j] ? 1.f : 1.f - w + w * reliability_of(b.quality[j]);
               });
  const float fl = float(p.pairs_max), ne = float(e.n);
  if (w > 0.f) {
    e.score = std::clamp(ne * ne / (reliable_overlap(wa, e.overlap_a, fl) * reliable_overlap(wb, e.overlap_b, fl)),
                         0.f, 1.f);
    return;
  }
  e.score = std::clamp(ne * ne / (std::max(float(e.overlap_a), fl) * std::max(float(e.overlap_b), fl)), 0.f, 1.f);
}

}  // namespace

ElasticTerm elastic_term(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int ntop,
                         bool reliable) {
  ElasticTerm e;
  try_anchors(cfg, a, b, s, ntop, e);
  if (e.anchor >= 0 && e.n >= 3) refit_anchor(cfg, a, b, s, e);
  if (e.anchor >= 0) elastic_score(cfg.params(), a, b, s, reliable, e);
  return e;
}

void explain_elastic(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, const ElasticTerm& e,
                     Explanation& ex) {
  if (e.anchor >= 0) {
    elastic_count(cfg, a, b, s.ta[e.anchor], s.tb[e.anchor], s, -1, e.cos, e.sin);
  } else {
    s.ea.clear();
    s.eb.clear();
  }
  ex.elastic_a = s.ea;
  ex.elastic_b = s.eb;
  ex.elastic_anchor = e.anchor;
  ex.n_elastic = e.n;
  ex.elastic_overlap_a = e.overlap_a;
  ex.elastic_overlap_b = e.overlap_b;
  ex.elastic_score = e.score;
}

}  // namespace biomatch::detail
