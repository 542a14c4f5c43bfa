// LSS-R relaxation (Section 4.3): the compatibility rho of every two LSS pairs, n_rel
// relaxation iterations, and the n_P pairs of highest efficiency whose mean is the LSS-R score.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "mcc_internal.hpp"
#include "stages.hpp"

namespace biomatch::detail {
namespace {

// One relaxation iteration for the nb blocks of kFloatLanes t from t0: l2 = wr l1 + norm
// sum_k rho[k][t] l1[k], summing over k in order.  The nb blocks share one pass over k: nb
// independent accumulation chains (each sum is latency-bound).
template <int nb>
__attribute__((always_inline)) inline void relax_blocks(const float* __restrict rho, int nr, int stride, int t0,
                                                        float wr, float norm, const float* __restrict l1,
                                                        float* __restrict l2) {
  constexpr int W = kFloatLanes;
  typedef float vec __attribute__((vector_size(4 * W)));
  vec acc[nb] = {};
  for (int k = 0; k < nr; ++k) {
    for (int u = 0; u < nb; ++u) {
      vec row;
      std::memcpy(&row, rho + size_t(k) * stride + t0 + u * W, sizeof row);
      acc[u] += row * l1[k];
    }
  }
  for (int u = 0; u < nb; ++u) {
    vec prev, out;
    std::memcpy(&prev, l1 + t0 + u * W, sizeof prev);
    out = wr * prev + norm * acc[u];
    std::memcpy(l2 + t0 + u * W, &out, sizeof out);
  }
}

// Relaxation iterations (Section 4.3) on the transposed compatibility matrix rho (rows of
// `stride` floats, a multiple of 16): blocks of kFloatLanes t held in one vector register of
// the module's instruction set (4 on the x86-64 baseline, 8 with AVX2, 16 with AVX-512: wider
// generic vectors are split through the stack), up to four blocks per pass over k.  GCC/Clang
// vector extensions: element-wise IEEE operations, and per element the same sum in the same
// order, so the same bits for any width and grouping.  The result is left in l1.
__attribute__((always_inline)) inline void relax_w(const float* rho, int nr, int stride, float wr, float norm,
                                                   int iterations, std::vector<float>& v1, std::vector<float>& v2) {
  constexpr int W = kFloatLanes;
  for (int it = 0; it < iterations; ++it) {
    float* l2 = v2.data();
    const float* l1 = v1.data();
    int t0 = 0;
    for (; t0 + 4 * W <= stride; t0 += 4 * W) relax_blocks<4>(rho, nr, stride, t0, wr, norm, l1, l2);
    for (; t0 + 2 * W <= stride; t0 += 2 * W) relax_blocks<2>(rho, nr, stride, t0, wr, norm, l1, l2);
    for (; t0 < stride; t0 += W) relax_blocks<1>(rho, nr, stride, t0, wr, norm, l1, l2);
    std::swap(v1, v2);
  }
}

// The k in (t, nr) whose distance term is not negligible, in order, written to near; returns
// their number.  Branch-free (most k are negligible).
inline int near_pairs(const Config& cfg, const float* da, const float* db, const int* ra, const int* rb, int t,
                      int nr, int* __restrict near) {
  int nk = 0;
  for (int k = t + 1; k < nr; ++k) {
    near[nk] = k;
    nk += !cfg.z_dist_negligible(std::fabs(da[ra[k]] - db[rb[k]]));
  }
  return nk;
}

#ifdef BIOMATCH_HAVE_AVX512
// table[idx] for idx in [0, 64), table in 4 vectors of 16 (permutes instead of a gather).
__attribute__((always_inline)) inline __m512i lookup64(__m512i idx, const __m512i* t) {
  const __m512i lo = _mm512_permutex2var_epi32(t[0], idx, t[1]);  // index bits 0..4
  const __m512i hi = _mm512_permutex2var_epi32(t[2], idx, t[3]);
  return _mm512_mask_blend_epi32(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), lo, hi);
}

// The first min(n, 64) entries of row in 4 vectors (zeros past n), for lookup64.
__attribute__((always_inline)) inline void load64(const void* row, int n, __m512i* t) {
  for (int u = 0; u < 4; ++u) {
    const int left = n - 16 * u;
    const __mmask16 m = left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
    t[u] = _mm512_maskz_loadu_epi32(m, static_cast<const int*>(row) + 16 * u);
  }
}

// near_pairs, 16 k at a time (gathers and an in-register compression; the same comparison of
// the same products, so the same set), written as pair codes t << 16 | k, with their distance
// difference d1 = |dA - dB| in near_d (the compatibility pass reuses it instead of gathering
// both distances again).  near and near_d need room for 16 entries past the last.
inline int near_pairs_avx512(const Config& cfg, const float* da, const float* db, int na, int nb, const int* ra,
                             const int* rb, int t, int nr, int* __restrict near, float* __restrict near_d) {
  const __m512 scale = _mm512_set1_ps(cfg.dist_scale()), cutoff = _mm512_set1_ps(cfg.dist_cutoff());
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  __m512i vk = _mm512_add_epi32(_mm512_set1_epi32((t << 16) + t + 1),  // pair codes t << 16 | k
                                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  int nk = 0;
  // Rows of at most 64 minutiae: held in registers, looked up by permutes (the same values).
  const bool small = na <= 64 && nb <= 64 && t + 1 < nr;
  __m512i da_v[4], db_v[4];
  if (small) {
    load64(da, na, da_v);
    load64(db, nb, db_v);
  }
  for (int k = t + 1; k < nr; k += 16) {
    const int left = nr - k;
    const __mmask16 live = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const __m512i ia = _mm512_maskz_loadu_epi32(live, ra + k), ib = _mm512_maskz_loadu_epi32(live, rb + k);
    __m512 dA, dB;
    if (small) {
      dA = _mm512_castsi512_ps(lookup64(ia, da_v));
      dB = _mm512_castsi512_ps(lookup64(ib, db_v));
    } else {
      dA = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, ia, da, 4);
      dB = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, ib, db, 4);
    }
    const __m512 d = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_sub_ps(dA, dB)), abs_mask));
    const __mmask16 keep = _mm512_mask_cmp_ps_mask(live, _mm512_mul_ps(d, scale), cutoff, _CMP_NGE_UQ);
    _mm512_storeu_si512(near + nk, _mm512_maskz_compress_epi32(keep, vk));
    _mm512_storeu_ps(near_d + nk, _mm512_maskz_compress_ps(keep, d));
    nk += __builtin_popcount(keep);
    vk = _mm512_add_epi32(vk, _mm512_set1_epi32(16));
  }
  return nk;
}
#endif

// Compatibility rho of every two relaxation pairs (see relax_pairs), the same bits under
// any target: scalar IEEE operations, table look-ups.
__attribute__((always_inline)) inline void build_rho_w(const Config& cfg, const Prepared& a, const Prepared& b,
                                                       const int* ra, const int* rb, int nr, int stride,
                                                       int* __restrict near, float* rho) {
  for (int t = 0; t < nr; ++t) {
    const int at = ra[t], bt = rb[t];
    const float* da = &a.dist[size_t(at) * a.n];
    const float* db = &b.dist[size_t(bt) * b.n];
    const float* rla = &a.rel[size_t(at) * a.n];
    const float* rlb = &b.rel[size_t(bt) * b.n];
    const float* rda = &a.radial[size_t(at) * a.n];
    const float* rdb = &b.radial[size_t(bt) * b.n];
    int nk;
    nk = near_pairs(cfg, da, db, ra, rb, t, nr, near);
    for (int q = 0; q < nk; ++q) {
      const int k = near[q];
      const int ak = ra[k], bk = rb[k];
      const float d1 = std::fabs(da[ak] - db[bk]);
      const float z = cfg.z_dist(d1) * cfg.z_angle(abs_angle_diff(rla[ak], rlb[bk]));
      rho[size_t(k) * stride + t] = z * cfg.z_angle(abs_angle_diff(rda[ak], rdb[bk]));
      rho[size_t(t) * stride + k] =
          z * cfg.z_angle(abs_angle_diff(a.radial[size_t(ak) * a.n + at], b.radial[size_t(bk) * b.n + bt]));
    }
  }
}

#ifdef BIOMATCH_HAVE_AVX512
// Helpers of build_rho_avx512.
__attribute__((always_inline)) inline __m512 gather16(__mmask16 live, __m512i idx, const float* base) {
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, idx, base, 4);
}

// table[min(int(v * scale), last)], as Config::z_dist / z_angle.
__attribute__((always_inline)) inline __m512 lut16(__mmask16 live, const float* table, __m512 v, __m512 scale,
                                                   __m512i last) {
  return gather16(live, _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_mul_ps(v, scale)), last), table);
}

// abs_angle_diff: min(d, 2pi - d) with d = |x - y|, as std::min(d, 2pi - d).
__attribute__((always_inline)) inline __m512 angle_diff16(__m512 x, __m512 y) {
  const __m512 d = _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(_mm512_sub_ps(x, y)), _mm512_set1_epi32(0x7fffffff)));
  return _mm512_min_ps(_mm512_sub_ps(_mm512_set1_ps(kTwoPi), d), d);
}

// build_rho_w with vectors: first the codes of all non-negligible pairs (t, k) and their d1, then
// their compatibilities 16 at a time (gathers of the table entries, the same operations in the
// same order per element as build_rho_w), stored into rho one by one (a 16-lane scatter costs
// more than 32 scalar stores on Zen 4).  near and near_d need room for nr (nr - 1) / 2 + 16
// entries.
void build_rho_avx512(const Config& cfg, const Prepared& a, const Prepared& b, const int* ra, const int* rb, int nr,
                      int stride, int* near, float* near_d, float* rho) {
  int total = 0;
  for (int t = 0; t < nr; ++t)
    total += near_pairs_avx512(cfg, &a.dist[size_t(ra[t]) * a.n], &b.dist[size_t(rb[t]) * b.n], a.n, b.n, ra, rb,
                               t, nr, near + total, near_d + total);
  const __m512 ds = _mm512_set1_ps(cfg.dist_scale()), as = _mm512_set1_ps(cfg.angle_scale());
  const __m512i last = _mm512_set1_epi32(cfg.lut_size() - 1);
  const __m512i low16 = _mm512_set1_epi32(0xffff), vna = _mm512_set1_epi32(a.n), vnb = _mm512_set1_epi32(b.n);
  const __m512i vstride = _mm512_set1_epi32(stride);
  const float* lut_d = cfg.lut_dist();
  const float* lut_a = cfg.lut_angle();
  // nr <= 64: ra and rb held in registers (4 vectors each, zeros past nr).
  const bool small = nr <= 64;
  __m512i ra_v[4], rb_v[4];
  for (int u = 0; u < 4; ++u) {
    const int left = small ? nr - 16 * u : 0;
    const __mmask16 m = left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
    ra_v[u] = _mm512_maskz_loadu_epi32(m, ra + 16 * u);
    rb_v[u] = _mm512_maskz_loadu_epi32(m, rb + 16 * u);
  }
  for (int q = 0; q < total; q += 16) {
    const int left = total - q;
    const __mmask16 live = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const __m512i code = _mm512_maskz_loadu_epi32(live, near + q);
    const __m512i vt = _mm512_srli_epi32(code, 16), vk = _mm512_and_si512(code, low16);
    __m512i at, bt, ak, bk;
    if (small) {  // ra[t], rb[t], ra[k], rb[k] by in-register permutes (the same values)
      at = lookup64(vt, ra_v);
      bt = lookup64(vt, rb_v);
      ak = lookup64(vk, ra_v);
      bk = lookup64(vk, rb_v);
    } else {
      const __m512i z0 = _mm512_setzero_si512();
      at = _mm512_mask_i32gather_epi32(z0, live, vt, ra, 4);
      bt = _mm512_mask_i32gather_epi32(z0, live, vt, rb, 4);
      ak = _mm512_mask_i32gather_epi32(z0, live, vk, ra, 4);
      bk = _mm512_mask_i32gather_epi32(z0, live, vk, rb, 4);
    }
    const __m512i ia = _mm512_add_epi32(_mm512_mullo_epi32(at, vna), ak);  // (at, ak) in A's tables
    const __m512i ib = _mm512_add_epi32(_mm512_mullo_epi32(bt, vnb), bk);
    const __m512 d1 = _mm512_maskz_loadu_ps(live, near_d + q);
    const __m512 a1 = angle_diff16(gather16(live, ia, a.rel.data()), gather16(live, ib, b.rel.data()));
    const __m512 z = _mm512_mul_ps(lut16(live, lut_d, d1, ds, last), lut16(live, lut_a, a1, as, last));
    const __m512 a2 = angle_diff16(gather16(live, ia, a.radial.data()), gather16(live, ib, b.radial.data()));
    alignas(64) float r1[16], r2[16];
    alignas(64) int i1[16], i2[16];
    _mm512_store_ps(r1, _mm512_mul_ps(z, lut16(live, lut_a, a2, as, last)));
    _mm512_store_si512(i1, _mm512_add_epi32(_mm512_mullo_epi32(vk, vstride), vt));
    const __m512i ia2 = _mm512_add_epi32(_mm512_mullo_epi32(ak, vna), at);  // (ak, at)
    const __m512i ib2 = _mm512_add_epi32(_mm512_mullo_epi32(bk, vnb), bt);
    const __m512 a3 = angle_diff16(gather16(live, ia2, a.radial.data()), gather16(live, ib2, b.radial.data()));
    _mm512_store_ps(r2, _mm512_mul_ps(z, lut16(live, lut_a, a3, as, last)));
    _mm512_store_si512(i2, _mm512_add_epi32(_mm512_mullo_epi32(vt, vstride), vk));
    for (int u = 0, m = std::min(left, 16); u < m; ++u) {
      rho[i1[u]] = r1[u];
      rho[i2[u]] = r2[u];
    }
  }
}
#endif

}  // namespace

void relax_pairs(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int nr) {
  const MccParams& p = cfg.params();
  const int stride = (nr + 15) & ~15;  // as s.l0's
  const int* ra = s.ra.data();
  const int* rb = s.rb.data();
  // Every table access below is in the rows ra[t] of A's and rb[t] of B's distance, direction
  // and radial tables.  B, the candidate, is usually not in the L1/L2 cache (a new one each
  // match): its rows are requested now, so that the misses overlap instead of stalling the
  // dependent loads one by one.
  {
    const size_t row_bytes = size_t(b.n) * sizeof(float);
    for (int t = 0; t < nr; ++t) {
      const size_t off = size_t(rb[t]) * b.n;
      for (size_t by = 0; by < row_bytes; by += 64) {
        __builtin_prefetch(reinterpret_cast<const char*>(&b.dist[off]) + by);
        __builtin_prefetch(reinterpret_cast<const char*>(&b.rel[off]) + by);
        __builtin_prefetch(reinterpret_cast<const char*>(&b.radial[off]) + by);
      }
    }
  }
  // rho(t, k) of every two pairs, then n_rel iterations.  d1 and d2 are symmetric in (t, k), d3
  // is not (the angle of the segment t -> k is taken relative to t's direction), so both orders
  // are computed; the matrix is stored transposed, rho[k * stride + t] = rho(t, k), for the
  // column-block update below.
  s.rho.assign(size_t(nr) * stride, 0.f);
  if (s.near.size() < size_t(nr) * nr / 2 + 16) s.near.resize(size_t(nr) * nr / 2 + 16);
#ifdef BIOMATCH_HAVE_AVX512
  if (s.near_d.size() < s.near.size()) s.near_d.resize(s.near.size());
#endif
  float* rho = s.rho.data();
#ifdef BIOMATCH_HAVE_AVX512
  // (32-bit table indices and pair codes t << 16 | k in the vector code)
  if (a.n < 32768 && b.n < 32768)
    build_rho_avx512(cfg, a, b, ra, rb, nr, stride, s.near.data(), s.near_d.data(), rho);
  else
#endif
    build_rho_w(cfg, a, b, ra, rb, nr, stride, s.near.data(), rho);
  // lambda^{i}_t = w_R lambda^{i-1}_t + (1 - w_R) / (n_R - 1) sum_k rho(t, k) lambda^{i-1}_k, by
  // blocks of 16 t held in one vector register, summing over k in order.
  // GCC/Clang vector extensions: element-wise IEEE operations, the same bits on any target.
  s.l1 = s.l0;
  s.l2.resize(stride);
  const float wr = p.relax_weight;
  const float norm = nr > 1 ? (1.f - wr) / float(nr - 1) : 0.f;
  relax_w(rho, nr, stride, wr, norm, p.relax_iterations, s.l1, s.l2);
}

namespace {

// Minutia reliability (biomatch's addition): the score from the min(np, nr) pairs of highest
// r_t x efficiency, sum r_t lambda^n_rel_t / np, with r_t = 1 - w + w sqrt(q_a q_b) normalised to
// mean 1 over the n_R pairs (q: minutia quality / 100).  Relative to the comparison's own mean,
// so that uniformly poor prints are not marked down (that only adds print-to-print variance):
// within a comparison, pairs of clear minutiae outweigh pairs of minutiae on blurred or
// border ridges.  Reuses s.keys2.
float weighted_lssr(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int nr, int np) {
  const float w = cfg.params().lssr_reliability_weight;
  s.rw.resize(nr);
  float total = 0.f;
  for (int t = 0; t < nr; ++t) {
    s.rw[t] = 1.f - w + w * std::sqrt(reliability_of(a.quality[s.ra[t]]) * reliability_of(b.quality[s.rb[t]]));
    total += s.rw[t];
  }
  const float k = float(nr) / total;  // total > 0: nr >= 1 and reliability_of() > 0
  uint64_t* ek = s.keys2.data();
  for (int t = 0; t < nr; ++t) {
    const float e = s.rw[t] * s.l1[t] / s.l0[t];
    uint32_t ebits;
    std::memcpy(&ebits, &e, sizeof ebits);
    ek[t] = (uint64_t(ebits) << 32) | uint32_t(~uint32_t(t));
  }
  const int ntop = std::min(np, nr);
  if (ntop < nr) std::nth_element(ek, ek + ntop, ek + nr, std::greater<uint64_t>());
  float sum = 0.f;
  for (int q = 0; q < ntop; ++q) {
    const int t = static_cast<int>(~static_cast<uint32_t>(ek[q]));
    sum += s.rw[t] * s.l1[t];
  }
  return std::clamp(k * sum / float(np), 0.f, 1.f);
}

}  // namespace

float lssr_top_pairs(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int nr, int np,
                     bool reliable) {
  // Efficiencies lambda^n_rel / lambda^0 are >= 0, so their float bits sort like them; ties go
  // to the lower t.
  s.keys2.assign(nr + kFloatLanes / 2, 0);  // zero padding for the rank count below
  for (int t = 0; t < nr; ++t) {
    const float e = s.l1[t] / s.l0[t];
    uint32_t ebits;
    std::memcpy(&ebits, &e, sizeof ebits);
    s.keys2[t] = (uint64_t(ebits) << 32) | uint32_t(~uint32_t(t));
  }
  const int ntop = std::min(np, nr);
  const int* ra = s.ra.data();
  const int* rb = s.rb.data();
  uint64_t* ek = s.keys2.data();
  // The keys are distinct (t in the low bits), so the q-th of the sorted top ones is the key
  // with exactly q larger keys: the ranks of a vector register of keys at a time, counted
  // against each key in turn (GCC/Clang vector extensions; zero padding is smaller than any
  // key and is not counted), then each key of the top put at its place, branch-free (a key
  // outside the top goes to the spare entry nr).  The order nth_element and sort give.
  constexpr int L = kFloatLanes / 2;
  typedef uint64_t kvec __attribute__((vector_size(8 * L)));
  const int padded = (nr + L - 1) / L * L;
  s.order.resize(nr + 1);
  for (int t0 = 0; t0 < padded; t0 += L) {
    kvec keys, larger = {};
    std::memcpy(&keys, ek + t0, sizeof keys);
    for (int u = 0; u < nr; ++u) larger -= (kvec{} + ek[u]) > keys;  // -1 where ek[u] is larger
    for (int l = 0, nl = std::min(L, nr - t0); l < nl; ++l) {
      const uint64_t rank = larger[l];
      s.order[rank < uint64_t(ntop) ? rank : nr] = t0 + l;
    }
  }
  s.order.resize(ntop);
  float sum = 0.f;
  s.ta.resize(ntop);
  s.tb.resize(ntop);
  s.tw.resize(ntop);
  s.tr.resize(ntop);
  for (int q = 0; q < ntop; ++q) {
    int t = s.order[q];
    sum += s.l1[t];
    s.ta[q] = ra[t];
    s.tb[q] = rb[t];
    s.tw[q] = std::max(s.l1[t], 0.f);
    s.tr[q] = s.l1[t];
  }
  if (reliable && cfg.params().lssr_reliability_weight > 0.f) return weighted_lssr(cfg, a, b, s, nr, np);
  return std::clamp(sum / float(np), 0.f, 1.f);
}

}  // namespace biomatch::detail
