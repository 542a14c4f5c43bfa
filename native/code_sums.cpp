// The code stage's exhaustive pass (biomatch/retrieval/faiss_retrieval.py): the weighted
// agreement of every stored finger code of one position with one probe finger, added to its
// person's sum.  One read of 64 B per row and a few bit counts: per million rows in memory, one
// thread, 3 planes, ~5 ms with AVX-512 VPOPCNTDQ (below the ~8 ms of reading a mapped file's
// page cache), ~11 ms with AVX2 (nibble tables), ~30 ms portable (scalar POPCNT).
//
// A probe bit i carries an integer weight q_i in [0, 2^L); its planes hold bit l of every q_i
// (packed as the codes are).  With x = code ^ probe (the bits that disagree), the agreement
//     sum_i q_i (+1 agree, -1 disagree) = total - 2 sum_l 2^l popcount(x & plane_l)
// is an exact integer, so every kernel gives the same value; scale brings it to the units of
// n_bits / 2 - Hamming.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "mcc.hpp"

namespace biomatch {

namespace {

inline bool removed_row(const uint8_t* removed, int64_t bit) {
  // np.packbits order: the first row is the most significant bit of the first byte
  return (removed[bit >> 3] >> (7 - (bit & 7))) & 1;
}

inline int64_t disagreement(const uint64_t* code, const uint64_t* probe, const uint64_t* planes,
                            int n_words, int n_planes) {
  int64_t s = 0;
  for (int l = 0; l < n_planes; ++l) {
    int64_t c = 0;
    const uint64_t* pl = planes + static_cast<int64_t>(l) * n_words;
    for (int k = 0; k < n_words; ++k) c += __builtin_popcountll((code[k] ^ probe[k]) & pl[k]);
    s += c << l;
  }
  return s;
}

// Rows read ahead by software prefetch (1.5 KB): the hardware prefetcher stops at each 4 KiB page
// of a mapped file, whose pages lie anywhere in memory; measured over the ten mapped positions of
// the 1M gallery, AVX-512: 75 ms without, 68-69 ms at 16-32 rows, 78 ms at 8.
constexpr int64_t kPrefetchRows = 24;

struct Rows {
  const uint64_t* codes;
  int64_t n_rows;
  const int32_t* keys;
  const uint8_t* removed;
  int64_t removed_offset;
  const uint64_t* probe;
  const uint64_t* planes;
  int64_t total;
  float scale;
  float* sums;
  uint8_t* seen;
  int64_t n_keys;

#if defined(__AVX2__)
  // Asks for rows i + kPrefetchRows .. + n - 1 ahead of their use (a hint: never faults).
  inline void prefetch(int64_t i, int n) const {
    for (int j = 0; j < n; ++j)
      _mm_prefetch(reinterpret_cast<const char*>(codes + 8 * (i + kPrefetchRows + j)), _MM_HINT_T0);
  }
#endif

  // Adds row i's score (d: its disagreement count, the sum over planes of 2^l popcount) to its
  // person; a person not seen yet starts from 0, whatever the caller filled sums with (-inf:
  // the persons without a row are then never selected, with no pass over the array to mask them).
  inline void add(int64_t i, int64_t d) const {
    if (removed && removed_row(removed, removed_offset + i)) return;
    const int64_t key = keys[i];
    if (key < 0 || key >= n_keys) return;
    sums[key] = (seen[key] ? sums[key] : 0.0f) + scale * static_cast<float>(total - 2 * d);
    seen[key] = 1;
  }

  // Rows i .. i + n - 1 may be added as one vector: their keys are n consecutive persons in range
  // and none is removed.  This is the usual layout (one row per person and position, appended in
  // key order), and the vector add (add8, add4) does per row the operations of add(), so the same
  // bits; the row-by-row add() was ~40% of the pass (27 of 63 ms over the ten positions at 1M,
  // AVX-512), its loads and stores of one person after another serialised.
  inline bool consecutive(int64_t i, int n, int32_t k0) const {
    if (k0 < 0 || k0 + n > n_keys) return false;
    if (removed)
      for (int j = 0; j < n; ++j)
        if (removed_row(removed, removed_offset + i + j)) return false;
    return true;
  }

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
  // Rows i .. i + 7, their disagreement counts in the lanes of dv.
  inline void add8(int64_t i, __m512i dv) const {
    const int32_t k0 = keys[i];
    const __m256i want = _mm256_add_epi32(_mm256_set1_epi32(k0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i k = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
    if (_mm256_cmpeq_epi32_mask(k, want) != 0xff || !consecutive(i, 8, k0)) {
      alignas(64) int64_t d[8];
      _mm512_store_si512(d, dv);
      for (int j = 0; j < 8; ++j) add(i + j, d[j]);
      return;
    }
    // scale * float(total - 2 d), the int64 converted as static_cast<float> does (round to nearest)
    const __m512i t = _mm512_sub_epi64(_mm512_set1_epi64(total), _mm512_slli_epi64(dv, 1));
    const __m256 v = _mm256_mul_ps(_mm256_set1_ps(scale), _mm512_cvtepi64_ps(t));
    uint64_t flags;
    std::memcpy(&flags, seen + k0, sizeof flags);
    const __m128i f = _mm_cvtsi64_si128(static_cast<long long>(flags));
    const __m256 prev = _mm256_maskz_loadu_ps(_mm_test_epi8_mask(f, f), sums + k0);  // 0 where not seen
    _mm256_storeu_ps(sums + k0, _mm256_add_ps(prev, v));
    const uint64_t ones = 0x0101010101010101ull;
    std::memcpy(seen + k0, &ones, sizeof ones);
  }
#endif
#if defined(__AVX2__)
  // Rows i .. i + 3, their disagreement counts in the lanes of dv.  |total - 2 d| < 2^24: the
  // int32 conversion gives the int64 one's float exactly.
  inline void add4(int64_t i, __m256i dv) const {
    const int32_t k0 = keys[i];
    const __m128i want = _mm_add_epi32(_mm_set1_epi32(k0), _mm_setr_epi32(0, 1, 2, 3));
    const __m128i k = _mm_loadu_si128(reinterpret_cast<const __m128i*>(keys + i));
    if (_mm_movemask_epi8(_mm_cmpeq_epi32(k, want)) != 0xffff || !consecutive(i, 4, k0)) {
      alignas(32) int64_t d[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(d), dv);
      for (int j = 0; j < 4; ++j) add(i + j, d[j]);
      return;
    }
    const __m256i t = _mm256_sub_epi64(_mm256_set1_epi64x(total), _mm256_slli_epi64(dv, 1));
    const __m256i lo = _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    const __m128 v = _mm_mul_ps(_mm_set1_ps(scale), _mm_cvtepi32_ps(_mm256_castsi256_si128(lo)));
    uint32_t flags;
    std::memcpy(&flags, seen + k0, sizeof flags);
    const __m128i was = _mm_cmpgt_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(static_cast<int>(flags))), _mm_setzero_si128());
    const __m128 prev = _mm_and_ps(_mm_loadu_ps(sums + k0), _mm_castsi128_ps(was));  // +0 where not seen
    _mm_storeu_ps(sums + k0, _mm_add_ps(prev, v));
    const uint32_t ones = 0x01010101u;
    std::memcpy(seen + k0, &ones, sizeof ones);
  }
#endif
};

template <int L>
void sums_scalar(const Rows& a) {
  // 512-bit codes, L planes as constants: the loops unroll into 8 L POPCNT per row.
  uint64_t p[8], pl[L][8];
  std::memcpy(p, a.probe, sizeof p);
  std::memcpy(pl, a.planes, sizeof pl);
  for (int64_t i = 0; i < a.n_rows; ++i) {
    const uint64_t* c = a.codes + 8 * i;
    uint64_t x[8];
    for (int k = 0; k < 8; ++k) x[k] = c[k] ^ p[k];
    int64_t d = 0;
    for (int l = 0; l < L; ++l) {
      int64_t n = 0;
      for (int k = 0; k < 8; ++k) n += __builtin_popcountll(x[k] & pl[l][k]);
      d += n << l;
    }
    a.add(i, d);
  }
}

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
template <int L>
void sums_avx512(const Rows& a) {
  // Eight rows per step: each row's weighted counts stay in its 8 lanes until one transposing
  // reduction sums the eight rows at once (a reduction per row cost ~40% more).
  const __m512i p = _mm512_loadu_si512(a.probe);
  __m512i pl[L];
  for (int l = 0; l < L; ++l) pl[l] = _mm512_loadu_si512(a.planes + 8 * l);
  int64_t i = 0;
  for (; i + 8 <= a.n_rows; i += 8) {
    __m512i r[8];
    a.prefetch(i, 8);
    for (int j = 0; j < 8; ++j) {
      const __m512i x = _mm512_xor_si512(_mm512_loadu_si512(a.codes + 8 * (i + j)), p);
      __m512i acc = _mm512_popcnt_epi64(_mm512_and_si512(x, pl[0]));
      for (int l = 1; l < L; ++l)
        acc = _mm512_add_epi64(acc, _mm512_slli_epi64(_mm512_popcnt_epi64(_mm512_and_si512(x, pl[l])), l));
      r[j] = acc;
    }
    // lane sums of r[0..7] into the lanes 0..7 of one vector
    const __m512i t0 = _mm512_add_epi64(_mm512_unpacklo_epi64(r[0], r[1]), _mm512_unpackhi_epi64(r[0], r[1]));
    const __m512i t1 = _mm512_add_epi64(_mm512_unpacklo_epi64(r[2], r[3]), _mm512_unpackhi_epi64(r[2], r[3]));
    const __m512i t2 = _mm512_add_epi64(_mm512_unpacklo_epi64(r[4], r[5]), _mm512_unpackhi_epi64(r[4], r[5]));
    const __m512i t3 = _mm512_add_epi64(_mm512_unpacklo_epi64(r[6], r[7]), _mm512_unpackhi_epi64(r[6], r[7]));
    const __m512i u0 = _mm512_add_epi64(_mm512_shuffle_i64x2(t0, t1, 0x88), _mm512_shuffle_i64x2(t0, t1, 0xDD));
    const __m512i u1 = _mm512_add_epi64(_mm512_shuffle_i64x2(t2, t3, 0x88), _mm512_shuffle_i64x2(t2, t3, 0xDD));
    a.add8(i, _mm512_add_epi64(_mm512_shuffle_i64x2(u0, u1, 0x88), _mm512_shuffle_i64x2(u0, u1, 0xDD)));
  }
  for (; i < a.n_rows; ++i) a.add(i, disagreement(a.codes + 8 * i, a.probe, a.planes, 8, L));
}
#endif

#if defined(__AVX2__)
template <int L>
void sums_avx2(const Rows& a) {
  // No vector popcount: bytes counted through a nibble table (Mula et al. 2018) on the code's
  // nibbles masked by the planes' (split once per probe), the planes weighted in the byte
  // counts by Horner's rule (at most 16 x 15 = 240 per byte: no overflow up to 4 planes), one
  // sum of absolute differences per row, four rows' sums gathered into one vector.
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i p0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.probe));
  const __m256i p1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.probe + 4));
  __m256i lo0[L], hi0[L], lo1[L], hi1[L];  // per plane and half: its low nibbles, its high nibbles
  for (int l = 0; l < L; ++l) {
    const __m256i h0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.planes + 8 * l));
    const __m256i h1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.planes + 8 * l + 4));
    lo0[l] = _mm256_and_si256(h0, low);
    hi0[l] = _mm256_and_si256(_mm256_srli_epi16(h0, 4), low);
    lo1[l] = _mm256_and_si256(h1, low);
    hi1[l] = _mm256_and_si256(_mm256_srli_epi16(h1, 4), low);
  }
  int64_t i = 0;
  for (; i + 4 <= a.n_rows; i += 4) {
    __m256i s[4];
    a.prefetch(i, 4);
    for (int j = 0; j < 4; ++j) {
      const __m256i* c = reinterpret_cast<const __m256i*>(a.codes + 8 * (i + j));
      const __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256(c), p0);
      const __m256i x1 = _mm256_xor_si256(_mm256_loadu_si256(c + 1), p1);
      const __m256i x0l = _mm256_and_si256(x0, low), x0h = _mm256_and_si256(_mm256_srli_epi16(x0, 4), low);
      const __m256i x1l = _mm256_and_si256(x1, low), x1h = _mm256_and_si256(_mm256_srli_epi16(x1, 4), low);
      auto count = [&](int l) {
        return _mm256_add_epi8(
            _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(x0l, lo0[l])),
                            _mm256_shuffle_epi8(table, _mm256_and_si256(x0h, hi0[l]))),
            _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(x1l, lo1[l])),
                            _mm256_shuffle_epi8(table, _mm256_and_si256(x1h, hi1[l]))));
      };
      __m256i acc = count(L - 1);
      for (int l = L - 2; l >= 0; --l) acc = _mm256_add_epi8(_mm256_add_epi8(acc, acc), count(l));
      s[j] = _mm256_sad_epu8(acc, _mm256_setzero_si256());
    }
    const __m256i t01 = _mm256_add_epi64(_mm256_unpacklo_epi64(s[0], s[1]), _mm256_unpackhi_epi64(s[0], s[1]));
    const __m256i t23 = _mm256_add_epi64(_mm256_unpacklo_epi64(s[2], s[3]), _mm256_unpackhi_epi64(s[2], s[3]));
    a.add4(i, _mm256_add_epi64(_mm256_permute2x128_si256(t01, t23, 0x20), _mm256_permute2x128_si256(t01, t23, 0x31)));
  }
  for (; i < a.n_rows; ++i) a.add(i, disagreement(a.codes + 8 * i, a.probe, a.planes, 8, L));
}
#endif

}  // namespace

void code_sums(const uint64_t* codes, int64_t n_rows, int n_words, const int32_t* keys,
               const uint8_t* removed, int64_t removed_offset, const uint64_t* probe,
               const uint64_t* planes, int n_planes, int64_t total, float scale, float* sums,
               uint8_t* seen, int64_t n_keys) {
  const Rows rows{codes, n_rows, keys, removed, removed_offset, probe, planes, total, scale, sums, seen, n_keys};
  if (n_words == 8 && n_planes >= 1 && n_planes <= 4) {
    // The plane count as a constant: the loops unroll (a runtime count was 2x slower at 3).
    const auto pass = [&](auto planes_c) {
      constexpr int L = decltype(planes_c)::value;
#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
      sums_avx512<L>(rows);
#elif defined(__AVX2__)
      sums_avx2<L>(rows);
#else
      sums_scalar<L>(rows);
#endif
    };
    switch (n_planes) {
      case 1: return pass(std::integral_constant<int, 1>{});
      case 2: return pass(std::integral_constant<int, 2>{});
      case 3: return pass(std::integral_constant<int, 3>{});
      default: return pass(std::integral_constant<int, 4>{});
    }
  }
  for (int64_t i = 0; i < n_rows; ++i) rows.add(i, disagreement(codes + n_words * i, probe, planes, n_words, n_planes));
}

void code_sums_blocked(const CodePass* passes, int n_passes, float* sums, uint8_t* seen, int64_t n_keys,
                       int64_t block_keys) {
  auto run = [&](const CodePass& c, int64_t lo, int64_t hi) {
    if (hi > lo)
      code_sums(c.codes + lo * c.n_words, hi - lo, c.n_words, c.keys + lo, c.removed, c.removed_offset + lo, c.probe,
                c.planes, c.n_planes, c.total, c.scale, sums, seen, n_keys);
  };
  if (block_keys <= 0) {
    for (int q = 0; q < n_passes; ++q) run(passes[q], 0, passes[q].n_rows);
    return;
  }
  // Summing the ten positions of a 1M gallery one after the other streamed the 5 MB of sums and
  // flags through memory ten times: 47 ms blocked at 32,768 persons against 59 ms (AVX-512).
  std::vector<int64_t> at(n_passes, 0);
  int64_t end = block_keys;  // this block: the persons below `end` not yet summed
  for (;;) {
    int64_t next = INT64_MAX;  // the smallest key left
    for (int q = 0; q < n_passes; ++q) {
      const CodePass& c = passes[q];
      const int64_t stop = std::lower_bound(c.keys + at[q], c.keys + c.n_rows, end) - c.keys;
      run(c, at[q], stop);
      at[q] = stop;
      if (stop < c.n_rows) next = std::min<int64_t>(next, c.keys[stop]);
    }
    if (next == INT64_MAX) return;
    end = std::max(end, next) + block_keys;  // skips a gap in the keys at once
  }
}

}  // namespace biomatch
