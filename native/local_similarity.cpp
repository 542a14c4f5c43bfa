// Local similarity (Section 4.1) of every direction-compatible pair of valid cylinders, by the
// popcount kernel the Config names, and the LSS selection (Section 4.2) of the pairs that
// enter relaxation.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "mcc_internal.hpp"
#include "stages.hpp"

#if defined(__SSE4_1__) && !defined(BIOMATCH_HAVE_AVX2) && !defined(BIOMATCH_HAVE_AVX512)
#include <smmintrin.h>  // the portable module's similarity pass (mcc_scan.inc)
#endif

namespace biomatch {

using namespace detail;

namespace {

namespace scan_portable {
#include "mcc_scan.inc"
}  // namespace scan_portable

#ifdef BIOMATCH_HAVE_AVX512
namespace scan_avx512 {
#define BIOMATCH_SCAN_AVX512 1
#include "mcc_scan.inc"
#undef BIOMATCH_SCAN_AVX512
}  // namespace scan_avx512
#endif

}  // namespace

namespace detail {

int scan_pairs(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s) {
#ifdef BIOMATCH_HAVE_AVX512
  if (cfg.mask_words() <= 8) {
    const int chunks = (cfg.words() + 7) / 8;
    const bool half = cfg.words() - 8 * (chunks - 1) <= 4 && cfg.mask_words() <= 4;
    switch (chunks * 2 + half) {  // 8-word chunks held in registers; larger cylinders go portable
      case 3: return scan_avx512::scan<1, true>(cfg, a, b, s);
      case 5: return scan_avx512::scan<2, true>(cfg, a, b, s);
      case 7: return scan_avx512::scan<3, true>(cfg, a, b, s);
      case 9: return scan_avx512::scan<4, true>(cfg, a, b, s);
      case 2: return scan_avx512::scan<1>(cfg, a, b, s);
      case 4: return scan_avx512::scan<2>(cfg, a, b, s);
      case 6: return scan_avx512::scan<3>(cfg, a, b, s);
      case 8: return scan_avx512::scan<4>(cfg, a, b, s);
      default: break;
    }
  }
#endif
  // The default cylinders (N_S 16, N_D 6: 1,248 disc cells) with a fixed word count.
  if (cfg.words() == 20) return scan_portable::scan<0, false, 20>(cfg, a, b, s);
  return scan_portable::scan<0>(cfg, a, b, s);
}

int select_lss_pairs(Scratch& s, int total, int nmin) {
  const float* sim = s.sim.data();
  // The n_R = min(nA, nB) most similar pairs, ties broken by the lower (minutia_a, minutia_b).
  // The threshold bin thr is the highest bin v with at least n_R pairs in bins [v, kBins]; that
  // count falls with v, so a binary search finds thr, counting a vector register of bins per
  // comparison (GCC/Clang vector extensions): about 9 passes over the bytes cost less than a
  // histogram's increment per pair.  Only the pairs at or above thr become sort keys.
  constexpr int kBins = kLssBins;
  constexpr int kBytes = kFloatLanes * 4;  // one vector register
  typedef uint8_t bvec __attribute__((vector_size(kBytes)));
  const int padded = (total + kBytes - 1) / kBytes * kBytes;
  uint8_t* bins = s.bins.data();  // computed by the scan, with room for the padding
  std::memset(bins + total, kBins + 1, padded - total);  // no similarity: never counted
  auto at_least = [&](int v) {  // pairs with v <= bin <= kBins
    const bvec vv = bvec{} + static_cast<uint8_t>(v), top = bvec{} + static_cast<uint8_t>(kBins);
    int c = 0;
    for (int t0 = 0; t0 < padded; t0 += 255 * kBytes) {  // byte counters: at most 255 steps
      bvec acc = {};
      for (int t = t0, t1 = std::min(padded, t0 + 255 * kBytes); t < t1; t += kBytes) {
        bvec x;
        std::memcpy(&x, bins + t, sizeof x);
        acc -= (bvec)((x >= vv) & (x <= top));  // -1 (255) where counted
      }
      for (int l = 0; l < kBytes; ++l) c += acc[l];
    }
    return c;
  };
  const int positive = at_least(0);
  if (positive == 0) return 0;
  const int nr = std::min(nmin, positive);
  int thr = 0;  // at_least(thr) >= nr; the highest such bin in [thr, hi]
  for (int hi = kBins; thr < hi;) {
    const int mid = (thr + hi + 1) / 2;
    if (at_least(mid) >= nr) thr = mid;
    else hi = mid - 1;
  }
  if (s.keys.size() < size_t(total) + 8) s.keys.resize(size_t(total) + 8);
  uint64_t* keys = s.keys.data();
  const uint32_t* code = s.code.data();
  const float thr_sim = float(thr) / kBins;  // sim * kBins >= thr  <=>  sim >= thr / kBins (kBins = 2^7)
  // Kept: sim > 0 and sim >= thr_sim.  Similarities are +0 or positive, so this is an integer
  // comparison of their bits with max(bits(thr_sim), 1).
  uint32_t lim;
  std::memcpy(&lim, &thr_sim, sizeof lim);
  lim = std::max<uint32_t>(lim, 1u);
  int m = 0;
  int t = 0;
#if defined(BIOMATCH_HAVE_AVX512) && defined(__AVX512F__) && defined(__AVX512VL__)
  {  // 16 pairs at a time, compressed in order (the same keys in the same order as the loop below)
    const __m512i vlim = _mm512_set1_epi32(static_cast<int>(lim));
    const __m512i ones = _mm512_set1_epi32(-1);
    for (; t + 16 <= total; t += 16) {
      const __m512i g = _mm512_loadu_si512(sim + t);
      const __mmask16 keep = _mm512_cmpge_epu32_mask(g, vlim);
      // Branch-free, and compressed in registers then stored whole (keys has 8 spare entries):
      // few blocks keep a pair, unpredictably, and a compressing store to memory is microcoded
      // on some cores (Zen 4).  The second half's place comes from the first half's count, so
      // that the chain from one block to the next is one addition.
      const __m512i c = _mm512_xor_si512(_mm512_loadu_si512(code + t), ones);
      const __m512i k0 = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(g)), 32),
                                         _mm512_cvtepu32_epi64(_mm512_castsi512_si256(c)));
      const __m512i k1 = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(g, 1)), 32),
                                         _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(c, 1)));
      const int m0 = __builtin_popcount(keep & 0xff);
      _mm512_storeu_si512(keys + m, _mm512_maskz_compress_epi64(__mmask8(keep), k0));
      _mm512_storeu_si512(keys + m + m0, _mm512_maskz_compress_epi64(__mmask8(keep >> 8), k1));
      m += __builtin_popcount(keep);
    }
  }
#endif
  for (; t < total; ++t) {  // branch-free compaction: every key is written, kept ones advance m
    uint32_t gbits;
    std::memcpy(&gbits, &sim[t], sizeof gbits);
    keys[m] = (uint64_t(gbits) << 32) | uint32_t(~code[t]);
    m += gbits >= lim;
  }
  if (m > nr) std::nth_element(keys, keys + nr, keys + m, std::greater<uint64_t>());
  // Rows padded to a multiple of 16 floats so that the relaxation loop vectorises cleanly.
  const int stride = (nr + 15) & ~15;
  s.ra.resize(nr);
  s.rb.resize(nr);
  s.l0.assign(stride, 0.f);
  for (int t = 0; t < nr; ++t) {
    const uint32_t lo = ~static_cast<uint32_t>(keys[t]), hi = static_cast<uint32_t>(keys[t] >> 32);
    s.ra[t] = static_cast<int>(lo >> 16);
    s.rb[t] = static_cast<int>(lo & 0xffff);
    std::memcpy(&s.l0[t], &hi, sizeof hi);
  }
  return nr;
}

}  // namespace detail

float cylinder_similarity(const Config& cfg, const Prepared& a, int ia, const Prepared& b, int ib) {
  // One-cylinder views of a and b, scanned by the same kernel as match().
  auto view = [](const Prepared& t, int i, Prepared& v) {
    auto it = std::find(t.cyl_index.begin(), t.cyl_index.end(), i);
    if (it == t.cyl_index.end()) return false;
    const size_t r = it - t.cyl_index.begin(), w = t.words, mw = t.mask_words;
    v.words = t.words;
    v.mask_words = t.mask_words;
    v.cyl_index = {i};
    v.cyl_theta = {t.cyl_theta[r]};
    v.bits.assign(t.bits.begin() + r * w, t.bits.begin() + (r + 1) * w);
    v.mask.assign(t.mask.begin() + r * w, t.mask.begin() + (r + 1) * w);
    v.smask.assign(t.smask.begin() + r * mw, t.smask.begin() + (r + 1) * mw);
    v.cyl_full = {t.cyl_full[r]};
    v.cyl_ones = {t.cyl_ones[r]};
    return true;
  };
  Prepared va, vb;
  if (!view(a, ia, va) || !view(b, ib, vb)) return 0.f;
  Scratch s;
  return scan_pairs(cfg, va, vb, s) == 0 ? 0.f : s.sim[0];
}

}  // namespace biomatch
