// Preparation (Section 3): the cylinders of a minutiae set, packed and sorted by direction,
// and the per-template tables the later stages read (pairwise distances and angles, the hull,
// the orientation grid's blocks).
//
// Two computations of the cells, with the same bits.  The reference (cell_values, behind
// cylinder_values) sums, per cell, each neighbour's term with std::exp and std::erf.  prepare()
// builds the cylinders with CylinderBuilder, an order of magnitude cheaper: the pairs of minutiae
// within reach found once per template and their angular terms computed once for both
// cylinders; cell validity as bit masks, from the hull's edge lines over all disc cells at once,
// the exact hull test only near the hull's boundary; the sums from separable Gaussian factors
// over the rows and columns of each neighbour within reach, and the angular terms, by
// vectorisable approximations of exp and erf whose error is bounded; and the exact reference sum
// of a cell only when the approximate one lies within that bound of the threshold.  The decisions
// are therefore those of the reference, bit for bit (tests/test_prepare_kernel.py and
// tests/test_native_kernels.py compare the two, on every kernel).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <stdexcept>

#include "hull.hpp"
#include "mcc_internal.hpp"
#if !defined(BIOMATCH_HAVE_AVX2) && !defined(BIOMATCH_HAVE_AVX512) && defined(__SSE2__)
#include <immintrin.h>  // the portable module's movemask (lane_bits)
#endif

namespace biomatch {

using namespace detail;

namespace {

// Minutiae in the y-up working frame (angles counter-clockwise, theta in [0, 2pi)) and their hull.
void working_frame(const float* xyaq, int n, std::vector<float>& xs, std::vector<float>& ys,
                   std::vector<float>& th, std::vector<float>& hull) {
  xs.resize(n);
  ys.resize(n);
  th.resize(n);
  for (int i = 0; i < n; ++i) {
    xs[i] = xyaq[4 * i];
    ys[i] = -xyaq[4 * i + 1];
    float t = std::fmod(xyaq[4 * i + 2], kTwoPi);
    th[i] = t < 0 ? t + kTwoPi : t;
  }
  hull = convex_hull(xs, ys);
}

// A minutia within reach of some cell of minutia m's cylinder: its offset in the cylinder's
// frame, its relative direction, and the box of cells its term is summed over.
struct Neighbour {
  float du, dv, dth;
  int i0, i1, j0, j1;
};

// Neighbour t of minutia m, at offset (dx, dy) in the working frame, for the cylinder's frame
// (c, s) = (cos, sin) of m's direction.
Neighbour neighbour(const Geometry& g, float dx, float dy, float dth, float c, float s) {
  const int ns = g.ns;
  Neighbour b;
  b.du = dx * c + dy * s;
  b.dv = -dx * s + dy * c;
  b.dth = wrap_pi(dth);
  b.i0 = std::max(0, static_cast<int>(std::floor((b.du - g.reach) / g.ds + 0.5f * (ns - 1))));
  b.i1 = std::min(ns - 1, static_cast<int>(std::ceil((b.du + g.reach) / g.ds + 0.5f * (ns - 1))));
  b.j0 = std::max(0, static_cast<int>(std::floor((b.dv - g.reach) / g.ds + 0.5f * (ns - 1))));
  b.j1 = std::min(ns - 1, static_cast<int>(std::ceil((b.dv + g.reach) / g.ds + 0.5f * (ns - 1))));
  return b;
}

// The neighbours of minutia m in ascending index, the order of the reference sums.
void find_neighbours(const Geometry& g, const float* xs, const float* ys, const float* th, int n, int m,
                     float c, float s, std::vector<Neighbour>& out) {
  out.clear();
  const float reach_nb = g.r + g.reach;
  for (int t = 0; t < n; ++t) {
    if (t == m) continue;
    float dx = xs[t] - xs[m], dy = ys[t] - ys[m];
    if (dx * dx + dy * dy > reach_nb * reach_nb) continue;
    out.push_back(neighbour(g, dx, dy, th[t] - th[m], c, s));
  }
}

// The reference value of cell (i, j) in every angular plane: out[k], k < Nd.  cd_of(b) gives
// neighbour b's angular terms Geometry::angular (Nd of them); asked only of the neighbours
// within reach of the cell.
template <class CdOf>
void exact_cell(const Geometry& g, const std::vector<Neighbour>& nbs, CdOf&& cd_of, int i, int j, float* out) {
  const int nd = g.nd;
  std::fill(out, out + nd, 0.f);
  for (size_t b = 0; b < nbs.size(); ++b) {
    const Neighbour& nb = nbs[b];
    if (i < nb.i0 || i > nb.i1 || j < nb.j0 || j > nb.j1) continue;
    float eu = g.centre(i) - nb.du, ev = g.centre(j) - nb.dv;
    float d2 = eu * eu + ev * ev;
    if (d2 > g.reach * g.reach) continue;
    float cs = g.gs_norm * std::exp(-d2 / (2.f * g.sig_s * g.sig_s));
    const float* cd = cd_of(b);
    for (int k = 0; k < nd; ++k) out[k] += cs * cd[k];
  }
}

void exact_angular(const Geometry& g, const std::vector<Neighbour>& nbs, std::vector<float>& cd) {
  cd.resize(nbs.size() * g.nd);
  for (size_t b = 0; b < nbs.size(); ++b)
    for (int k = 0; k < g.nd; ++k) cd[b * g.nd + k] = g.angular(k, nbs[b].dth);
}

// The reference computation: cell values (n, Nd, Ns, Ns), cell validity (n, Ns, Ns), cylinder validity.
void cell_values(const Config& cfg, const float* xyaq, int n, std::vector<float>& values,
                 std::vector<uint8_t>& valid_cells, std::vector<uint8_t>& cyl_valid) {
  const MccParams& p = cfg.params();
  const Geometry g(p);
  const int ns = g.ns, nd = g.nd, plane = ns * ns;
  std::vector<float> xs, ys, th, hull, cd, cell(nd);
  working_frame(xyaq, n, xs, ys, th, hull);
  values.assign(static_cast<size_t>(n) * nd * plane, 0.f);
  valid_cells.assign(static_cast<size_t>(n) * plane, 0);
  cyl_valid.assign(n, 0);
  std::vector<Neighbour> nbs;
  for (int m = 0; m < n; ++m) {
    const float c = std::cos(th[m]), s = std::sin(th[m]);
    find_neighbours(g, xs.data(), ys.data(), th.data(), n, m, c, s, nbs);
    exact_angular(g, nbs, cd);
    int n_valid = 0;
    for (int i = 0; i < ns; ++i)
      for (int j = 0; j < ns; ++j) {
        float u = g.centre(i), v = g.centre(j);
        bool ok = u * u + v * v <= g.r * g.r &&
                  in_hull(hull, xs[m] + u * c - v * s, ys[m] + u * s + v * c, p.hull_margin_px);
        valid_cells[static_cast<size_t>(m) * plane + i * ns + j] = ok;
        n_valid += ok;
        exact_cell(g, nbs, [&](size_t b) { return &cd[b * nd]; }, i, j, cell.data());
        for (int k = 0; k < nd; ++k) values[(static_cast<size_t>(m) * nd + k) * plane + i * ns + j] = cell[k];
      }
    cyl_valid[m] = n_valid >= p.min_valid_cells_fraction * (cfg.disc_cells() / nd) &&
                   static_cast<int>(nbs.size()) >= p.min_neighbours;
  }
}

// Vectors by GCC's vector extension, written out rather than left to the auto-vectoriser: under
// the default -ftrapping-math it if-converts a loop with a select (the clamp below, the reach
// test of accumulate()) only with AVX-512's masked instructions, and left the avx2 and portable
// modules scalar there (2.5x slower prepare).  Element-wise IEEE operations, no contraction
// (-ffp-contract=off): the same bits in every lane and every module.  kLanes floats: one
// register of the module's instruction set (SSE for the portable x86-64-v2 module).
constexpr int kLanes = kFloatLanes;
typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef int32_t vi __attribute__((vector_size(4 * kLanes)));
// A row window of 8 cells (CylinderBuilder::kW) is one vector of kWv floats, or two in the
// portable module: written as one vector of 8 there, GCC split its selects into scalar lanes and
// passed its loads and stores through the stack (prepare 15% slower).
constexpr int kWv = kLanes < 8 ? kLanes : 8;
typedef float wv __attribute__((vector_size(4 * kWv)));

template <class V>
inline V vload(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
inline void vstore(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}

// exp(x) for x <= 0 (x below -80 is taken as -80), relative error below 4e-7: a power of two
// times a degree-7 Taylor polynomial on |r| <= ln2 / 2; rounding by adding 1.5 * 2^23.
inline vf exp_approx(vf x) {
  constexpr float kLog2e = 1.44269504f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f, kRound = 12582912.f;
  x = x > -80.f ? x : vf{} - 80.f;
  const vf kf = (x * kLog2e + kRound) - kRound;
  const vf r = (x - kf * kLn2Hi) - kf * kLn2Lo;  // kLn2Hi has 9 bits: kf * kLn2Hi is exact
  const vf q =
      1.f + r * (1.f + r * (0.5f + r * (1.f / 6 + r * (1.f / 24 + r * (1.f / 120 + r * (1.f / 720 + r * (1.f / 5040)))))));
  const vi bits = (__builtin_convertvector(kf, vi) + 127) << 23;  // 2^kf: kf >= -116
  return q * (vf)bits;  // vector casts reinterpret the bits
}

// erf(x), absolute error below 5e-7 (Abramowitz & Stegun 7.1.26, 1.5e-7, plus float rounding).
inline vf erf_approx(vf x) {
  const vi sign = vi{} + static_cast<int32_t>(0x80000000u);
  const vi xb = (vi)x;
  const vi ab = xb & ~sign;
  const vf a = (vf)ab, t = 1.f / (1.f + 0.3275911f * a);
  const vf poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const vf e = 1.f - poly * exp_approx(-a * a);
  return x < 0.f ? -e : e;
}

// atan2(y, x) in [-pi, pi]: within 1.4e-7 rad of the exact angle on [0, 1.5) (double precision
// over random directions; 5e-7 in the stored [0, 2pi) angles, their rounding included, tested in
// tests/test_native_kernels.py): the octant reduction to a = min / max in
// [0, 1], a > tan(pi/8) mapped to (a - 1) / (a + 1) around pi/4, and the odd degree-9 polynomial of
// Cephes' atanf on |z| <= tan(pi/8).  Ours rather than the C library's so that the radial angles,
// and the scores, are the same on every libm and vectorise (std::atan2 was 14% of prepare).
// atan2(0, 0) = 0, as the library's for +0.
inline vf atan2_approx(vf y, vf x) {
  const vi sign = vi{} + static_cast<int32_t>(0x80000000u);
  const vf ax = (vf)((vi)x & ~sign), ay = (vf)((vi)y & ~sign);
  const vf hi = ax < ay ? ay : ax, lo = ax < ay ? ax : ay;
  const vf a = lo / (hi > 0.f ? hi : vf{} + 1.f);
  constexpr float kTanPi8 = 0.414213562f, kPi4 = 0.785398163f;
  const vf z = a > kTanPi8 ? (a - 1.f) / (a + 1.f) : a, z2 = z * z;
  vf r = (((8.05374449538e-2f * z2 - 1.38776856032e-1f) * z2 + 1.99777106478e-1f) * z2 - 3.33329491539e-1f) * z2 * z + z;
  r = a > kTanPi8 ? r + kPi4 : r;
  r = ay > ax ? (0.5f * kPi) - r : r;
  r = x < 0.f ? kPi - r : r;
  return (vi)y < 0 ? vf{} - r : r;  // the sign bit: -0 gives -r, as atan2(-0, x)
}

// floor(x) for |x| < 2^31, exactly: the truncation, one less when it lies above x.
inline vf vfloor(vf x) {
  const vf t = __builtin_convertvector(__builtin_convertvector(x, vi), vf);
  return t > x ? t - 1.f : t;
}

// The correctly rounded square root of every lane (IEEE): std::sqrt's bits.
inline vf vsqrt(vf x) {
#if defined(BIOMATCH_HAVE_AVX512)
  return (vf)_mm512_sqrt_ps((__m512)x);
#elif defined(BIOMATCH_HAVE_AVX2)
  return (vf)_mm256_sqrt_ps((__m256)x);
#elif defined(__SSE2__)
  return (vf)_mm_sqrt_ps((__m128)x);
#else
  for (int l = 0; l < kLanes; ++l) x[l] = std::sqrt(x[l]);
  return x;
#endif
}

// Bound on |approximate - reference| of one neighbour's term in a cell, per gs_norm (the term is
// at most gs_norm): the approximate Gaussian's relative error stays below 2e-6 (two exp_approx,
// the products, and the reference's own rounding of d2 and exp), the angular term's absolute
// error below 1e-6 (two erf_approx, 5e-7; and 2.7e-7 from the plane centres of the mirrored terms,
// see phi_, within 4.8e-7 rad of the reference's for any Nd <= 32, times |dC_D/dphi| <= 0.57 at
// sigma_D = 40 deg); taken 3x larger.  The centres' share grows as 1 / sigma_D: the sum stays
// below the bound down to sigma_D = 5 deg.  A cell's bound is this times its neighbours, which
// also covers the rounding of both sums.  Measured over every valid cell of FVC2002 DB1_B and of
// 360 registry-like generated templates, per neighbour within reach of the cell: at most 4.4e-7
// (3.5e-7 before the mirrored terms), 23x below.  A larger bound only sends more cells to the
// reference sum.
constexpr float kTermErrorPerGsNorm = 1e-5f;

// Bit x of the result: lane x of a vector comparison's result (-1 true, 0 false).  One
// instruction on x86 (a compare's lanes straight into a bit mask), a loop elsewhere.
inline uint64_t lane_bits(vi m) {
#if defined(BIOMATCH_HAVE_AVX512)
  return _mm512_movepi32_mask(reinterpret_cast<__m512i>(m));
#elif defined(BIOMATCH_HAVE_AVX2)
  return static_cast<uint32_t>(_mm256_movemask_ps(reinterpret_cast<__m256>(m)));
#elif defined(__SSE2__)
  return static_cast<uint32_t>(_mm_movemask_ps(reinterpret_cast<__m128>(m)));
#else
  uint64_t r = 0;
  for (int x = 0; x < kLanes; ++x) r |= static_cast<uint64_t>(m[x] & 1) << x;
  return r;
#endif
}

// Bit x set when a[x] > v, x < 64.  SSE packs the comparisons of 16 floats into one byte mask
// (one movemask instead of four).
inline uint64_t above(const float* a, float v) {
  uint64_t r = 0;
#if !defined(BIOMATCH_HAVE_AVX2) && !defined(BIOMATCH_HAVE_AVX512) && defined(__SSE2__)
  const __m128 t = _mm_set1_ps(v);
  for (int l = 0; l < 64; l += 16) {
    const __m128i c0 = _mm_castps_si128(_mm_cmpgt_ps(_mm_loadu_ps(a + l), t));
    const __m128i c1 = _mm_castps_si128(_mm_cmpgt_ps(_mm_loadu_ps(a + l + 4), t));
    const __m128i c2 = _mm_castps_si128(_mm_cmpgt_ps(_mm_loadu_ps(a + l + 8), t));
    const __m128i c3 = _mm_castps_si128(_mm_cmpgt_ps(_mm_loadu_ps(a + l + 12), t));
    const __m128i b = _mm_packs_epi16(_mm_packs_epi32(c0, c1), _mm_packs_epi32(c2, c3));
    r |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(b))) << l;
  }
#else
  for (int l = 0; l < 64; l += kLanes) r |= lane_bits(vload<vf>(a + l) > v) << l;
#endif
  return r;
}

// ORs the count bits of src into dst from bit offset at.
void or_bits(const uint64_t* src, int count, uint64_t* dst, int at) {
  const int sh = at & 63;
  uint64_t* d = dst + (at >> 6);
  for (int w = 0; w < (count + 63) / 64; ++w) {
    const int left = count - 64 * w;
    const uint64_t v = left >= 64 ? src[w] : src[w] & ((uint64_t(1) << left) - 1);
    d[w] |= v << sh;
    if (sh != 0 && left > 64 - sh) d[w + 1] |= v >> (64 - sh);
  }
}

// Cylinders by the fast computation (see the file comment).
class CylinderBuilder {
 public:
  explicit CylinderBuilder(const Config& cfg);
  // This thread's builder for cfg's parameters: the geometry tables and every buffer are made
  // once per thread and parameter set, not per template (allocation was ~10% of prepare).
  static CylinderBuilder& of(const Config& cfg);
  // Starts template t (its minutia tables filled): the pairs of minutiae within reach of each
  // other, and their angular terms.
  void start(const Prepared& t);
  // Cylinder validity of minutia m of the template started (Section 3.2); when valid, its packed
  // cell bits, mask and spatial mask are ORed into bits, mask (words each) and smask (mask_words),
  // left untouched otherwise.
  bool build(int m, uint64_t* bits, uint64_t* mask, uint64_t* smask);

 private:
  void find_pairs();
  void pair_angular_terms();
  void find_neighbours(int m, float c, float s);
  int classify_cells(int m, float c, float s);
  int count_valid();
  uint64_t within_reach(int x0, int x1, float d) const;
  void neighbour_factors();
  void accumulate();
  void threshold(uint64_t* bits, uint64_t* mask, uint64_t* smask);

  static constexpr int kW = 8;  // cells per vector of a row window
  const MccParams p_;
  const uint64_t config_id_;
  const Prepared* t_ = nullptr;  // the template being prepared
  const Geometry g_;
  const int disc_cells_;
  int ns_, nd_, nc_, front_;           // Ns, Nd, disc cells per plane; acc_'s padding before plane 0
  int ncv_;                            // nc_ rounded up to whole vectors (kLanes)
  int box_ = 0;                        // the current neighbours' widest span, rounded up to kW
  std::vector<float> ctr_;             // cell centre g.centre(i), i < 2 Ns + max(kW, kLanes)
  std::vector<float> cu_, cv_;         // per disc cell: centre (u, v)
  std::vector<int> ci_, cj_;           // per disc cell: row and column
  std::vector<int> row_d0_, row_j0_;   // per row: its first disc cell, and that cell's column (row_j0_ > row_j1_: none)
  std::vector<int> row_j1_;
  std::vector<float> disc_;            // per row, Ns + 2 kW columns: 1 on the disc, else 0
  std::vector<float> px_, py_, mx_;    // per disc cell: centre in the working frame, max signed distance to a hull edge line
  int vcw_;                            // words of a bit per disc cell (whole vectors of cells)
  std::vector<std::pair<float, int>> near_edges_;  // hull edges near the cylinder: distance^2, index
  std::vector<uint64_t> vc_, band_, unsure_;  // per disc cell, a bit: valid; between the hull and the margin;
                                              // within kEps of a hull line
  std::vector<Neighbour> nbs_;
  struct Span {
    int i0, i1, j0, j1;
  };
  std::vector<Span> span_;             // per neighbour: its box's rows and columns within reach
  std::vector<float> eu_, ev_, gu_, gv_;  // per neighbour, box_ each: offsets of its span's rows and columns (far
                                          // past the span), Gaussian factors (gs_norm in gu_)
  std::vector<float> phi_;                 // per plane: its centre angle
  // Per template: the pairs (a, b), a < b, within a cylinder's reach of each other, in ascending
  // order; per minutia its partners in ascending index (adj_start_[m] .. adj_start_[m + 1]), each
  // with its pair; per plane and pair the approximate C_D of b in a's cylinder (pair p of plane k
  // at k npv_ + p), and dth_, the pair's wrapped relative direction.
  struct Adjacent {
    int other, pair;
  };
  std::vector<int> pair_a_, pair_b_, adj_start_, adj_fill_;
  std::vector<Adjacent> adj_;
  int npv_ = 0;
  std::vector<float> dth_, pcd_;
  std::vector<int> nb_pair_;               // per neighbour: its pair, ~pair when the planes are mirrored
  std::vector<float> nbf_;                 // find_neighbours' vectors
  std::vector<int> nbi_;
  std::vector<float> cdx_;                 // per neighbour and plane: exact C_D
  std::vector<uint8_t> cdx_done_;          // per neighbour: cdx_ computed
  std::vector<float> acc_;                 // approximate sums, per plane and disc cell, padded before and after
  std::vector<uint64_t> und_;              // per plane and disc cell, a bit: too close to the threshold to tell
};

CylinderBuilder::CylinderBuilder(const Config& cfg)
    : p_(cfg.params()), config_id_(cfg.id()), g_(cfg.params()), disc_cells_(cfg.disc_cells()) {
  ns_ = g_.ns;
  nd_ = g_.nd;
  ctr_.resize(2 * ns_ + std::max(kW, kLanes));
  for (int i = 0; i < static_cast<int>(ctr_.size()); ++i) ctr_[i] = g_.centre(i);
  // Disc cells are numbered in row-major order, and each row's are contiguous (u^2 + v^2 <= r^2
  // is an interval of v, and centre() is monotone).
  row_d0_.assign(ns_, 0);
  row_j0_.assign(ns_, ns_);
  row_j1_.assign(ns_, -1);
  for (int q = 0; q < ns_ * ns_; ++q) {
    const int d = cfg.disc_index(q), i = q / ns_, j = q % ns_;
    if (d < 0) continue;
    if (row_j0_[i] > j) {
      row_j0_[i] = j;
      row_d0_[i] = d;
    }
    row_j1_[i] = j;
    ci_.push_back(i);
    cj_.push_back(j);
    cu_.push_back(ctr_[i]);
    cv_.push_back(ctr_[j]);
  }
  nc_ = static_cast<int>(cu_.size());
  disc_.assign(static_cast<size_t>(ns_) * (ns_ + 2 * kW), 0.f);
  for (int i = 0; i < ns_; ++i)
    for (int j = row_j0_[i]; j <= row_j1_[i]; ++j) disc_[static_cast<size_t>(i) * (ns_ + 2 * kW) + j] = 1.f;
  // Whole vectors over the disc cells: the padding cells (centre (0, 0)) are never read back.
  ncv_ = (nc_ + kLanes - 1) / kLanes * kLanes;
  cu_.resize(ncv_, 0.f);
  cv_.resize(ncv_, 0.f);
  mx_.resize(ncv_);
  px_.resize(ncv_);
  py_.resize(ncv_);
  vcw_ = (ncv_ + 63) / 64;
  vc_.resize(vcw_);
  band_.resize(vcw_);
  unsure_.resize(vcw_);
  // A window of kW cells starting up to Ns cells before a row's first disc cell, or ending up
  // to Ns + kW after it, stays inside acc_ (its cells outside the row are added 0).
  front_ = ns_ + kW;
  acc_.resize(front_ + static_cast<size_t>(nd_) * nc_ + std::max(ns_ + 2 * kW, 64));  // threshold() reads whole words
  und_.resize((static_cast<size_t>(nd_) * nc_ + 63) / 64);
  // Plane centres, mirrored exactly (phi_[Nd-1-k] = -phi_[k], as the planes are): the angular
  // terms of b in a's cylinder give a's in b's by reversing the planes, bit for bit (wrap and
  // erf_approx are odd).  Each within an ulp of the reference's centre (Geometry::angular).
  phi_.resize(nd_);
  for (int k = 0; k < nd_; ++k)
    phi_[k] = 2 * k + 1 < nd_ ? -kPi + (k + 0.5f) * g_.dd : 2 * k + 1 == nd_ ? 0.f : -phi_[nd_ - 1 - k];
}

void CylinderBuilder::start(const Prepared& t) {
  t_ = &t;
  find_pairs();
  pair_angular_terms();
}

// The pairs of the reference's neighbour lists (find_neighbours), its distance test on vectors
// of minutiae (Prepared::soa, padded far away): the same operations, so the same neighbours.  The
// test is symmetric (x_a - x_b = -(x_b - x_a) exactly), so each pair is tested once.
void CylinderBuilder::find_pairs() {
  const int n = t_->n, npad = t_->npad;
  const float reach_nb = g_.r + g_.reach, r2 = reach_nb * reach_nb;
  const float* xs = t_->soa.data();
  const float* ys = xs + npad;
  pair_a_.clear();
  pair_b_.clear();
  adj_start_.assign(n + 1, 0);
  for (int a = 0; a < n; ++a) {
    const float xa = xs[a], ya = ys[a];
    for (int w = (a + 1) & ~63; w < npad; w += 64) {
      uint64_t near = 0;
      for (int l = 0, end = std::min(64, npad - w); l < end; l += kLanes) {
        const vf dx = vload<vf>(xs + w + l) - xa, dy = vload<vf>(ys + w + l) - ya;
        near |= (~lane_bits(dx * dx + dy * dy > r2) & ((uint64_t(2) << (kLanes - 1)) - 1)) << l;
      }
      if (a + 1 > w) near &= ~uint64_t(0) << (a + 1 - w);  // partners above a only
      for (; near != 0; near &= near - 1) {
        const int b = w + __builtin_ctzll(near);
        if (b >= n) break;
        pair_a_.push_back(a);
        pair_b_.push_back(b);
        ++adj_start_[a + 1];
        ++adj_start_[b + 1];
      }
    }
  }
  for (int m = 0; m < n; ++m) adj_start_[m + 1] += adj_start_[m];
  // In pair order, each minutia's partners come in ascending index: those below it (the pairs
  // (x, m), by x) before those above it (the pairs (m, x), after every pair of a smaller x).
  adj_.resize(adj_start_[n]);
  adj_fill_.assign(adj_start_.begin(), adj_start_.end() - 1);
  for (int p = 0; p < static_cast<int>(pair_a_.size()); ++p) {
    adj_[adj_fill_[pair_a_[p]]++] = {pair_b_[p], p};
    adj_[adj_fill_[pair_b_[p]]++] = {pair_a_[p], p};
  }
}

// C_D = 0.5 (erf(hi) - erf(lo)) of every pair, b in a's cylinder, in one flat loop over
// (pair, plane).  Any representative of the wrapped angle will do: the term takes the same value
// at -pi and pi.
void CylinderBuilder::pair_angular_terms() {
  const int np = static_cast<int>(pair_a_.size()), nd = nd_;
  npv_ = (np + kLanes - 1) / kLanes * kLanes;
  dth_.resize(npv_);
  pcd_.resize(static_cast<size_t>(nd) * npv_);
  const float* th = t_->theta.data();
  for (int p = 0; p < npv_; ++p) dth_[p] = p < np ? th[pair_b_[p]] - th[pair_a_[p]] : 0.f;
  for (int p = 0; p < npv_; p += kLanes) {  // wrap_pi: the reference's Neighbour::dth
    const vf a = vload<vf>(&dth_[p]);
    vstore(&dth_[p], a - kTwoPi * vfloor((a + kPi) / kTwoPi));
  }
  const float half = 0.5f * g_.dd, sc = 1.f / (g_.sig_d * std::sqrt(2.f));
  for (int k = 0; k < nd; ++k)
    for (int p = 0; p < npv_; p += kLanes) {
      const vf an = phi_[k] - vload<vf>(&dth_[p]);
      const vf a = an - kTwoPi * (((an * (1.f / kTwoPi)) + 12582912.f) - 12582912.f);
      vstore(&pcd_[static_cast<size_t>(k) * npv_ + p],
             0.5f * (erf_approx((a + half) * sc) - erf_approx((a - half) * sc)));
    }
}

// The neighbours of minutia m in the reference's order (ascending index), from its pairs: the
// operations of neighbour() on vectors of neighbours (floor and ceil exact, as std::floor's).
void CylinderBuilder::find_neighbours(int m, float c, float s) {
  const int nb = adj_start_[m + 1] - adj_start_[m], nbv = (nb + kLanes - 1) / kLanes * kLanes;
  const Adjacent* adj = &adj_[adj_start_[m]];
  nb_pair_.resize(nb);
  nbf_.resize(static_cast<size_t>(3) * nbv);  // dx, dy, theta difference; then du, dv, dth
  nbi_.resize(static_cast<size_t>(4) * nbv);  // i0, i1, j0, j1
  float* dx = nbf_.data();
  float* dy = dx + nbv;
  float* dth = dy + nbv;
  const float xm = t_->x[m], ym = t_->y[m], thm = t_->theta[m];
  for (int b = 0; b < nbv; ++b) {  // padding lanes: offset 0, never read back
    const int u = b < nb ? adj[b].other : m;
    dx[b] = t_->x[u] - xm;
    dy[b] = t_->y[u] - ym;
    dth[b] = t_->theta[u] - thm;
    if (b < nb) nb_pair_[b] = u > m ? adj[b].pair : ~adj[b].pair;
  }
  const float reach = g_.reach, ds = g_.ds, mid = 0.5f * (ns_ - 1);
  for (int b = 0; b < nbv; b += kLanes) {
    const vf x = vload<vf>(dx + b), y = vload<vf>(dy + b), a = vload<vf>(dth + b);
    const vf du = x * c + y * s, dv = -x * s + y * c;
    vstore(dx + b, du);
    vstore(dy + b, dv);
    vstore(dth + b, a - kTwoPi * vfloor((a + kPi) / kTwoPi));  // wrap_pi
    const vf lo_u = vfloor((du - reach) / ds + mid), lo_v = vfloor((dv - reach) / ds + mid);
    const vf hi_u = -vfloor(-((du + reach) / ds + mid)), hi_v = -vfloor(-((dv + reach) / ds + mid));  // ceil
    const vi zero = vi{}, top = vi{} + (ns_ - 1);
    const vi i0 = __builtin_convertvector(lo_u, vi), j0 = __builtin_convertvector(lo_v, vi);
    const vi i1 = __builtin_convertvector(hi_u, vi), j1 = __builtin_convertvector(hi_v, vi);
    const vi box[4] = {i0 > zero ? i0 : zero, i1 < top ? i1 : top, j0 > zero ? j0 : zero, j1 < top ? j1 : top};
    for (int q = 0; q < 4; ++q) std::memcpy(&nbi_[q * nbv + b], &box[q], sizeof(vi));
  }
  nbs_.resize(nb);
  for (int b = 0; b < nb; ++b)
    nbs_[b] = {dx[b], dy[b], dth[b], nbi_[b], nbi_[nbv + b], nbi_[2 * nbv + b], nbi_[3 * nbv + b]};
}

// Valid cells of minutia m's cylinder (vc_), their count: in_hull(hull, cell, margin) as the
// reference computes it (Section 3.2), mostly without calling it.  A cell's largest signed
// distance to a hull edge line decides most cells: at most -kEps inside the hull, above
// margin + kEps farther than the margin from it.  kEps = 0.05 px lies far above the rounding of
// either computation (~1e-4 px for coordinates below 10^4 px).  Between 0 and the margin
// (outside the hull, by a line at least kEps away) in_hull is "some edge within the margin",
// which the edges near the cylinder decide in one vectorised pass; near 0, in_hull itself.
int CylinderBuilder::classify_cells(int m, float c, float s) {
  const int nc = nc_, ne = static_cast<int>(t_->hull_lines.size() / 3), nh = static_cast<int>(t_->hull.size() / 2);
  const float margin = p_.hull_margin_px, xm = t_->x[m], ym = t_->y[m];
  constexpr float kEps = 0.05f;
  float* px = px_.data();
  float* py = py_.data();
  float* mx = mx_.data();
  const int ncv = ncv_;
  for (int d = 0; d < ncv; d += kLanes) {  // cell centres in the working frame, as the reference computes them
    const vf u = vload<vf>(&cu_[d]), v = vload<vf>(&cv_[d]);
    vstore(px + d, xm + u * c - v * s);
    vstore(py + d, ym + u * s + v * c);
  }
  std::fill(vc_.begin(), vc_.end(), 0);
  if (ne < 3) {
    for (int d = 0; d < nc; ++d) vc_[d >> 6] |= uint64_t(in_hull(t_->hull, px[d], py[d], margin)) << (d & 63);
    return count_valid();
  }
  std::fill(mx, mx + ncv, -1e30f);
  const float* h = t_->hull_lines.data();
  int lines = 0;
  for (int e = 0; e < ne; ++e) {
    const float nx = h[3 * e], ny = h[3 * e + 1], off = h[3 * e + 2];
    // A line more than R + 1 px beyond the minutia, on the hull's side: every cell lies over
    // kEps on the inner side of it, so it cannot raise a decision above -kEps.
    if (nx * xm + ny * ym - off < -(g_.r + 1.f)) continue;
    ++lines;
    for (int d = 0; d < ncv; d += kLanes) {
      const vf cur = vload<vf>(mx + d), v = nx * vload<vf>(px + d) + ny * vload<vf>(py + d) - off;
      vstore(mx + d, cur < v ? v : cur);  // std::max(cur, v)
    }
  }
  if (lines == 0) {  // the whole cylinder well inside the hull
    std::fill(vc_.begin(), vc_.end(), ~uint64_t(0));
    return count_valid();
  }
  // Bit masks, a vector of cells at a time: inside, in the band, unsure (within kEps of a line).
  // Each word assembled in registers, as in threshold().
  uint64_t any_band = 0;
  for (int w = 0; w < vcw_; ++w) {
    uint64_t in = 0, band = 0, unsure = 0;
    for (int l = 0, end = std::min(64, ncv - 64 * w); l < end; l += kLanes) {
      const vf v = vload<vf>(mx + 64 * w + l);
      in |= lane_bits(v <= -kEps) << l;
      band |= lane_bits((v > kEps) & (v <= margin + kEps)) << l;
      unsure |= lane_bits((v > -kEps) & (v <= kEps)) << l;
    }
    vc_[w] = in;
    band_[w] = band;
    any_band |= band;
    unsure_[w] = unsure;
  }
  if (any_band != 0) {
    const float m2 = margin * margin, far = g_.r + margin + 1.f;
    const float* hp = t_->hull.data();
    // The edges within reach, nearest first: the nearest validates most band cells, and the
    // vectors left without an open band cell skip the farther edges.
    near_edges_.clear();
    for (int i = 0; i < nh; ++i) {
      const int j = i + 1 == nh ? 0 : i + 1;
      const float d2 = seg_dist2(xm, ym, hp[2 * i], hp[2 * i + 1], hp[2 * j], hp[2 * j + 1]);
      if (d2 <= far * far) near_edges_.push_back({d2, i});  // else farther than the margin from every cell
    }
    std::sort(near_edges_.begin(), near_edges_.end());
    for (const auto& [d2, i] : near_edges_) {
      const int j = i + 1 == nh ? 0 : i + 1;
      const float ax = hp[2 * i], ay = hp[2 * i + 1], qx = hp[2 * j], qy = hp[2 * j + 1];
      // seg_dist2(px, py, ax, ay, qx, qy) <= m2 per cell, with its operations (in_hull's exact bits),
      // over the vectors that hold band cells not yet found valid.
      const float dx = qx - ax, dy = qy - ay, l2 = dx * dx + dy * dy;
      for (int w = 0; w < vcw_; ++w) {
        const uint64_t open_w = band_[w] & ~vc_[w];
        if (open_w == 0) continue;
        uint64_t found = 0;
        for (int l = 0, end = std::min(64, ncv - 64 * w); l < end; l += kLanes) {
          if ((open_w >> l & ((uint64_t(2) << (kLanes - 1)) - 1)) == 0) continue;
          const vf x = vload<vf>(px + 64 * w + l), y = vload<vf>(py + 64 * w + l);
          vf t = vf{};
          if (l2 > 0) {
            t = ((x - ax) * dx + (y - ay) * dy) / l2;
            t = t < 0.f ? vf{} : (1.f < t ? vf{} + 1.f : t);  // std::clamp(t, 0, 1)
          }
          const vf ex = ax + t * dx - x, ey = ay + t * dy - y;
          found |= lane_bits(ex * ex + ey * ey <= m2) << l;
        }
        vc_[w] |= found & open_w;
      }
    }
  }
  // Within kEps of a line (rare): in_hull itself.  Padding cells past nc are cut by count_valid.
  for (int w = 0; w < vcw_; ++w)
    for (uint64_t u = unsure_[w]; u != 0; u &= u - 1) {
      const int d = 64 * w + __builtin_ctzll(u);
      const uint64_t bit = uint64_t(1) << (d & 63);
      vc_[w] = in_hull(t_->hull, px[d], py[d], margin) ? vc_[w] | bit : vc_[w] & ~bit;
    }
  return count_valid();
}

// Clears vc_'s bits past the disc cells, and counts the valid cells.
int CylinderBuilder::count_valid() {
  for (int w = nc_ >> 6; w < vcw_; ++w) {
    const int keep = nc_ - 64 * w;
    vc_[w] &= keep >= 64 ? ~uint64_t(0) : keep <= 0 ? 0 : (uint64_t(1) << keep) - 1;
  }
  int n = 0;
  for (int w = 0; w < vcw_; ++w) n += static_cast<int>(popcount64(vc_[w]));
  return n;
}

// Bit x set when (centre(x0 + x) - d)^2 <= reach^2, x0 + x <= x1 (at most Ns <= 64 cells).
uint64_t CylinderBuilder::within_reach(int x0, int x1, float d) const {
  const float reach2 = g_.reach * g_.reach;
  uint64_t in = 0;
  for (int x = 0; x <= x1 - x0; x += kLanes) {
    const vf e = vload<vf>(&ctr_[x0 + x]) - d;
    in |= (~lane_bits(e * e > reach2) & ((uint64_t(2) << (kLanes - 1)) - 1)) << x;  // as the reference's test
  }
  const int width = x1 - x0 + 1;
  return width <= 0 ? 0 : width >= 64 ? in : in & ((uint64_t(1) << width) - 1);
}

// Per neighbour: the rows and columns of its box within reach, their offsets and Gaussian factors
// (gs_norm in the row factor); flat loops over all neighbours, vectorised.
void CylinderBuilder::neighbour_factors() {
  const int nb = static_cast<int>(nbs_.size());
  // A cell the reference sums lies in the box with eu^2 + ev^2 <= reach^2, computed as there, so
  // with eu^2 <= reach^2 and ev^2 <= reach^2 (rounding is monotone): an interval of the box's
  // rows and one of its columns (|centre - du| grows away from du), each at most 2 reach / ds + 1
  // cells wide.  Only those are summed over: the box's first and last rows and columns lie
  // beyond reach but for exact ties, and a box one cell wider than kW would cost a second
  // window per row (and a box_ of 2 kW for every neighbour).
  box_ = kW;
  span_.resize(nb);
  for (int b = 0; b < nb; ++b) {
    const Neighbour& n = nbs_[b];
    Span& sp = span_[b];
    const uint64_t rows = within_reach(n.i0, n.i1, n.du), cols = within_reach(n.j0, n.j1, n.dv);
    sp.i0 = n.i0 + (rows ? __builtin_ctzll(rows) : 0);
    sp.i1 = rows ? n.i0 + 63 - __builtin_clzll(rows) : sp.i0 - 1;
    sp.j0 = n.j0 + (cols ? __builtin_ctzll(cols) : 0);
    sp.j1 = cols ? n.j0 + 63 - __builtin_clzll(cols) : sp.j0 - 1;
    box_ = std::max({box_, sp.i1 - sp.i0 + 1, sp.j1 - sp.j0 + 1});
  }
  box_ = (box_ + kW - 1) / kW * kW;
  const int B = box_;
  // Whole vectors: the padding past nb * B holds finite stale values, never read.
  const size_t nbox = static_cast<size_t>(nb) * B, nbox_pad = (nbox + kLanes - 1) / kLanes * kLanes;
  eu_.resize(nbox_pad);
  ev_.resize(nbox_pad);
  gu_.resize(nbox_pad);
  gv_.resize(nbox_pad);
  wv iota;
  for (int x = 0; x < kWv; ++x) iota[x] = static_cast<float>(x);
  for (int b = 0; b < nb; ++b) {
    const Neighbour& n = nbs_[b];
    const Span& sp = span_[b];
    // As the reference: g.centre(i) - du; columns past the span out of reach.  An empty span
    // (i1 < i0) is never read.
    const float cols = static_cast<float>(sp.j1 - sp.j0);
    for (int x = 0; x < B; x += kWv) {
      vstore(&eu_[b * B + x], vload<wv>(&ctr_[std::max(sp.i0, 0) + x]) - n.du);
      const wv ev = vload<wv>(&ctr_[std::max(sp.j0, 0) + x]) - n.dv;
      vstore(&ev_[b * B + x], iota + static_cast<float>(x) <= cols ? ev : wv{} + 1e4f);
    }
  }
  const float inv = 1.f / (2.f * g_.sig_s * g_.sig_s), gs = g_.gs_norm;
  for (size_t x = 0; x < nbox_pad; x += kLanes) {
    const vf eu = vload<vf>(&eu_[x]), ev = vload<vf>(&ev_[x]);
    vstore(&gu_[x], gs * exp_approx(-(eu * eu) * inv));
    vstore(&gv_[x], exp_approx(-(ev * ev) * inv));
  }
}

// Approximate cell sums into acc_: per neighbour, per row of its span, windows of kW cells
// (a vector each) weighted by the separable Gaussian and masked by the reference's own tests
// (d2 <= reach^2 with d2 computed as there; the span lies in the box) and by the row's disc
// cells.
void CylinderBuilder::accumulate() {
  const int nb = static_cast<int>(nbs_.size()), nd = nd_, nc = nc_, B = box_;
  const float reach2 = g_.reach * g_.reach;
  std::fill(acc_.begin(), acc_.end(), 0.f);
  float* acc = acc_.data() + front_;
  for (int b = 0; b < nb; ++b) {
    const Span& sp = span_[b];
    const int cols = sp.j1 - sp.j0 + 1;
    // Its pair's angular terms, the planes reversed from the other minutia's cylinder (see
    // phi_).  A local copy: the stores into acc_ cannot alias it, so its values stay in registers.
    float cd[32];  // Nd <= 32 (Config checks it)
    const int pr = nb_pair_[b];
    for (int k = 0; k < nd; ++k)
      cd[k] = pr >= 0 ? pcd_[static_cast<size_t>(k) * npv_ + pr] : pcd_[static_cast<size_t>(nd - 1 - k) * npv_ + ~pr];
    const float* ev = &ev_[static_cast<size_t>(b) * B];
    const float* gv = &gv_[static_cast<size_t>(b) * B];
    for (int r = 0; r <= sp.i1 - sp.i0; ++r) {
      const int i = sp.i0 + r;
      const float eu = eu_[b * B + r], gu = gu_[b * B + r];
      const int first = std::max(0, row_j0_[i] - sp.j0), last = std::min(cols, row_j1_[i] - sp.j0 + 1);
      for (int w = first & ~(kW - 1); w < last; w += kW) {
        // Columns past the span are out of reach (ev_), those off the disc weigh 0 (disc_).
        const float* dm = &disc_[static_cast<size_t>(i) * (ns_ + 2 * kW) + sp.j0 + w];
        wv wt[kW / kWv];
        for (int c = 0; c < kW / kWv; ++c) {
          const int x = w + c * kWv;
          const wv evw = vload<wv>(ev + x), d2 = eu * eu + evw * evw;
          const wv v = gu * vload<wv>(gv + x) * vload<wv>(dm + c * kWv);
          wt[c] = d2 <= reach2 ? v : wv{};
        }
        float* row = acc + row_d0_[i] + (sp.j0 + w - row_j0_[i]);
        for (int k = 0; k < nd; ++k, row += nc)
          for (int c = 0; c < kW / kWv; ++c) vstore(row + c * kWv, vload<wv>(row + c * kWv) + wt[c] * cd[k]);
      }
    }
  }
}

// Cell bits from the approximate sums, and from the reference sum where they are too close to
// the threshold to tell; the masks from vc_.
void CylinderBuilder::threshold(uint64_t* bits, uint64_t* mask, uint64_t* smask) {
  const int nc = nc_, nd = nd_, words = static_cast<int>(und_.size());
  const float thr = p_.cell_threshold;
  const float tol = static_cast<float>(nbs_.size()) * g_.gs_norm * kTermErrorPerGsNorm;
  const float lo = thr - tol, hi = thr + tol;
  for (int k = 0; k < nd; ++k) or_bits(vc_.data(), nc, mask, k * nc);
  for (int w = 0; w < (nc + 63) / 64; ++w) smask[w] |= vc_[w];
  // Per word of cells, as packed: set above hi, undecided in (lo, hi]; valid cells only (the
  // mask, which also cuts the cells past the last one: acc_ is padded to whole words).  Each
  // word is assembled in a register (an OR into memory per vector would chain its stores).
  const float* acc = acc_.data() + front_;
  for (int w = 0; w < words; ++w) {
    const uint64_t set = above(acc + 64 * w, hi), above_lo = above(acc + 64 * w, lo);
    bits[w] |= set & mask[w];
    und_[w] = above_lo & ~set & mask[w];
  }
  // Cells undecided in some plane: the reference sum decides all their planes (rare).
  float exact[32];  // Nd <= 32 (Config checks it)
  auto cd_of = [&](size_t b) {
    if (!cdx_done_[b]) {
      for (int k = 0; k < nd; ++k) cdx_[b * nd + k] = g_.angular(k, nbs_[b].dth);
      cdx_done_[b] = 1;
    }
    return &cdx_[b * nd];
  };
  for (int w = 0; w < words; ++w)
    while (und_[w] != 0) {
      const int d = (64 * w + __builtin_ctzll(und_[w])) % nc;
      exact_cell(g_, nbs_, cd_of, ci_[d], cj_[d], exact);
      for (int k = 0; k < nd; ++k) {
        const int bit = k * nc + d;
        const uint64_t one = uint64_t(1) << (bit & 63);
        bits[bit >> 6] = exact[k] > thr ? bits[bit >> 6] | one : bits[bit >> 6] & ~one;
        und_[bit >> 6] &= ~one;  // decided in every plane
      }
    }
}

CylinderBuilder& CylinderBuilder::of(const Config& cfg) {
  // Keyed by the Config's id, never by its address: a new Config may reuse a freed one's.
  thread_local std::unique_ptr<CylinderBuilder> builder;
  if (!builder || builder->config_id_ != cfg.id()) builder = std::make_unique<CylinderBuilder>(cfg);
  return *builder;
}

bool CylinderBuilder::build(int m, uint64_t* bits, uint64_t* mask, uint64_t* smask) {
  const float c = t_->cos_theta[m], s = t_->sin_theta[m];  // std::cos and std::sin of theta, as the reference's
  find_neighbours(m, c, s);
  if (static_cast<int>(nbs_.size()) < p_.min_neighbours) return false;
  const int n_valid = classify_cells(m, c, s);
  if (!(n_valid >= p_.min_valid_cells_fraction * (disc_cells_ / nd_))) return false;
  cdx_.resize(nbs_.size() * nd_);
  cdx_done_.assign(nbs_.size(), 0);
  neighbour_factors();
  accumulate();
  threshold(bits, mask, smask);
  return true;
}

// Per-minutia tables: quality, direction cosines, hull edges, bounding box, the padded
// structure-of-arrays copy, and the pairwise distance / relative angle tables.
void fill_minutia_tables(Prepared& t, const float* xyaq) {
  const int n = t.n;
  t.quality.resize(n);
  t.cos_theta.resize(n);
  t.sin_theta.resize(n);
  for (int i = 0; i < n; ++i) {
    t.quality[i] = xyaq[4 * i + 3];
    t.cos_theta[i] = std::cos(t.theta[i]);
    t.sin_theta[i] = std::sin(t.theta[i]);
  }
  t.hull_lines = hull_lines(t.hull);
  t.bbox = {0.f, 0.f, 0.f, 0.f};
  if (n > 0) {
    t.bbox = {t.x[0], t.y[0], t.x[0], t.y[0]};
    for (int i = 1; i < n; ++i) {
      t.bbox[0] = std::min(t.bbox[0], t.x[i]);
      t.bbox[1] = std::min(t.bbox[1], t.y[i]);
      t.bbox[2] = std::max(t.bbox[2], t.x[i]);
      t.bbox[3] = std::max(t.bbox[3], t.y[i]);
    }
  }
  t.npad = (n + 15) & ~15;
  t.soa.assign(size_t(4) * t.npad, 0.f);
  std::fill(t.soa.begin(), t.soa.begin() + 2 * t.npad, 1e6f);
  for (int i = 0; i < n; ++i) {
    t.soa[i] = t.x[i];
    t.soa[t.npad + i] = t.y[i];
    t.soa[2 * t.npad + i] = t.cos_theta[i];
    t.soa[3 * t.npad + i] = t.sin_theta[i];
  }
  // Pairwise tables, a row at a time over whole vectors of j: dist and rel with the operations of
  // std::sqrt(dx * dx + dy * dy) and r - 2pi floor(r / 2pi), min(r, top) (sqrt and floor are exact
  // operations: the same bits), radial by atan2_approx.
  t.dist.resize(static_cast<size_t>(n) * n);
  t.rel.resize(static_cast<size_t>(n) * n);
  t.radial.resize(static_cast<size_t>(n) * n);
  const int nv = (n + kLanes - 1) / kLanes * kLanes;
  std::vector<float> xs(nv, 0.f), ys(nv, 0.f), ths(nv, 0.f), row(3 * nv);
  std::copy(t.x.begin(), t.x.end(), xs.begin());
  std::copy(t.y.begin(), t.y.end(), ys.begin());
  std::copy(t.theta.begin(), t.theta.end(), ths.begin());
  const float top = std::nextafter(kTwoPi, 0.f);
  for (int i = 0; i < n; ++i) {
    const float xi = t.x[i], yi = t.y[i], ti = t.theta[i];
    for (int j = 0; j < nv; j += kLanes) {
      const vf dx = vload<vf>(&xs[j]) - xi, dy = vload<vf>(&ys[j]) - yi;
      vstore(&row[nv + j], vsqrt(dx * dx + dy * dy));
      // Angles relative to minutia i, in [0, 2pi): direction of j, and (below) of the segment i->j.
      vf r = vload<vf>(&ths[j]) - ti;
      r -= kTwoPi * vfloor(r / kTwoPi);
      vstore(&row[2 * nv + j], top < r ? vf{} + top : r);  // std::min(r, top)
    }
    std::copy(&row[nv], &row[nv] + n, &t.dist[static_cast<size_t>(i) * n]);
    std::copy(&row[2 * nv], &row[2 * nv] + n, &t.rel[static_cast<size_t>(i) * n]);
    for (int j = 0; j < nv; j += kLanes) {
      const vf rad = atan2_approx(vload<vf>(&ys[j]) - yi, vload<vf>(&xs[j]) - xi) - ti;
      const vf q = rad / kTwoPi;
      vf fl = (q + 12582912.f) - 12582912.f;  // nearest integer (|q| < 2), then floor
      fl = fl > q ? fl - 1.f : fl;
      const vf w = rad - kTwoPi * fl;
      vstore(&row[j], w < top ? w : vf{} + top);
    }
    std::copy(row.begin(), row.begin() + n, &t.radial[static_cast<size_t>(i) * n]);
  }
}

// The valid cylinders (Section 3.2), compacted and sorted by direction, with their counts: built
// in direction order straight into t's arrays (an invalid cylinder leaves its slot untouched, and
// the next one takes it).
void build_cylinders(const Config& cfg, Prepared& t, CylinderBuilder& builder) {
  const int n = t.n;
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int u, int v) { return t.theta[u] < t.theta[v]; });
  const size_t w = t.words, mw = t.mask_words;
  t.bits.assign(n * w, 0);
  t.mask.assign(n * w, 0);
  t.smask.assign(n * mw, 0);
  t.cyl_index.reserve(n);  // one allocation each, not one per doubling
  t.cyl_theta.reserve(n);
  t.cyl_full.reserve(n);
  t.cyl_ones.reserve(n);
  size_t v = 0;
  for (int i : order) {
    const uint64_t* bits = &t.bits[v * w];
    const uint64_t* smask = &t.smask[v * mw];
    if (!builder.build(i, &t.bits[v * w], &t.mask[v * w], &t.smask[v * mw])) continue;
    t.cyl_index.push_back(i);
    t.cyl_theta.push_back(t.theta[i]);
    uint64_t nbits = 0, nmask = 0;
    for (size_t u = 0; u < w; ++u) nbits += __builtin_popcountll(bits[u]);
    for (size_t u = 0; u < mw; ++u) nmask += __builtin_popcountll(smask[u]);
    t.cyl_full.push_back(static_cast<int>(nmask) * cfg.params().angular_cells == cfg.disc_cells());
    t.cyl_ones.push_back(nbits << 16 | nmask << 48);
    ++v;
  }
  t.bits.resize(v * w);
  t.mask.resize(v * w);
  t.smask.resize(v * mw);
}

// The block orientation grid: one cell per block (plus one without print), and per print block
// its centre and doubled-angle vector.
void fill_grid(Prepared& t, const uint8_t* grid, int rows, int cols) {
  t.grid_rows = rows;
  t.grid_cols = cols;
  const size_t g = size_t(rows) * cols;
  // One more cell, without print, for B's blocks that land outside this grid.
  t.grid.assign(g + 1, kGridNone);
  const DoubledAngles& da = doubled_angles();
  constexpr int B = kOrientationBlockPx;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const size_t k = size_t(i) * cols + j;
      const uint8_t v = grid[k];
      if (v == kNoPrint) continue;
      if (v >= 180) throw std::invalid_argument("orientation grid: expected degrees 0..179 or 255");
      t.grid[k] = v;
      // Block centre in the y-up working frame of the minutiae.
      t.grid_px.push_back(float(j * B) + 0.5f * B);
      t.grid_py.push_back(-(float(i * B) + 0.5f * B));
      t.grid_pc.push_back(da.c[v]);
      t.grid_ps.push_back(da.s[v]);
    }
  t.grid_n = static_cast<int>(t.grid_px.size());
  const size_t pad = (size_t(t.grid_n) + 15) & ~size_t(15);  // whole vectors in the mapping loop
  t.grid_px.resize(pad, -1e6f);
  t.grid_py.resize(pad, 1e6f);
  t.grid_pc.resize(pad, 0.f);
  t.grid_ps.resize(pad, 0.f);
}

}  // namespace

Prepared prepare(const Config& cfg, const float* xyaq, int n, const uint8_t* grid, int rows, int cols) {
  if (n < 0 || n > 65535) throw std::invalid_argument("minutiae: expected at most 65535 rows");
  if (rows < 0 || cols < 0 || rows > 4096 || cols > 4096 || (grid == nullptr && rows * cols > 0))
    throw std::invalid_argument("orientation grid: expected 0..4096 rows and columns");
  Prepared t;
  t.n = n;
  t.words = cfg.words();
  t.mask_words = cfg.mask_words();
  working_frame(xyaq, n, t.x, t.y, t.theta, t.hull);
  fill_minutia_tables(t, xyaq);  // the hull's edge lines first: the cell validity reads them
  CylinderBuilder& builder = CylinderBuilder::of(cfg);
  builder.start(t);
  build_cylinders(cfg, t, builder);
  if (grid != nullptr && rows > 0 && cols > 0) fill_grid(t, grid, rows, cols);
  return t;
}

void unpack_cylinders(const Config& cfg, const Prepared& t, std::vector<int>& index, std::vector<uint64_t>& bits,
                      std::vector<uint64_t>& mask) {
  const int nv = static_cast<int>(t.cyl_index.size()), fw = cfg.full_words();
  const int ns = cfg.params().spatial_cells, nd = cfg.params().angular_cells, plane = ns * ns;
  const int disc = cfg.disc_cells() / nd;
  std::vector<int> rows(nv);
  std::iota(rows.begin(), rows.end(), 0);
  std::sort(rows.begin(), rows.end(), [&](int u, int v) { return t.cyl_index[u] < t.cyl_index[v]; });
  index.clear();
  bits.assign(size_t(nv) * fw, 0);
  mask.assign(size_t(nv) * fw, 0);
  auto get = [](const uint64_t* v, int bit) { return (v[bit >> 6] >> (bit & 63)) & 1; };
  for (int r = 0; r < nv; ++r) {
    const int row = rows[r];
    index.push_back(t.cyl_index[row]);
    const uint64_t* pb = &t.bits[size_t(row) * t.words];
    const uint64_t* pm = &t.mask[size_t(row) * t.words];
    for (int q = 0; q < plane; ++q) {
      const int d = cfg.disc_index(q);
      if (d < 0) continue;
      for (int k = 0; k < nd; ++k) {
        const int src = k * disc + d, dst = k * plane + q;
        bits[size_t(r) * fw + (dst >> 6)] |= get(pb, src) << (dst & 63);
        mask[size_t(r) * fw + (dst >> 6)] |= get(pm, src) << (dst & 63);
      }
    }
  }
}

void cylinder_values(const Config& cfg, const float* xyaq, int n, std::vector<float>& values,
                     std::vector<uint8_t>& valid_cells, std::vector<uint8_t>& cylinder_valid) {
  cell_values(cfg, xyaq, n, values, valid_cells, cylinder_valid);
}

}  // namespace biomatch
