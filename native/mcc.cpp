// Minutia Cylinder-Code (bit variant) + LSS-R + elastic and global rigid consistency.
// See mcc.hpp for the contract; comments cite sections of Cappelli et al. 2010.
#include "mcc.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <functional>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <thread>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(BIOMATCH_NO_AVX512)
#include <immintrin.h>
#define BIOMATCH_HAVE_AVX512 1  // compiled with a target pragma, chosen at run time
#endif

namespace biomatch {
namespace {

constexpr float kPi = 3.14159265358979323846f;
constexpr float kTwoPi = 2.f * kPi;
constexpr float kDeg = kPi / 180.f;

inline float wrap_pi(float a) {  // to [-pi, pi)
  a = a - kTwoPi * std::floor((a + kPi) / kTwoPi);
  return a;
}

inline float abs_angle_diff(float a, float b) {  // a, b in [0, 2pi): |wrap(a - b)|
  float d = std::fabs(a - b);
  return std::min(d, kTwoPi - d);
}

inline float sigmoid(float v, float mu, float tau) { return 1.f / (1.f + std::exp(-tau * (v - mu))); }

// n_P for min(nA, nB) = nmin (Config::pairs_for tabulates it).
int pairs_eval(const MccParams& p, int nmin) {
  return p.pairs_min +
         static_cast<int>(std::lround(sigmoid(float(nmin), p.pairs_mu, p.pairs_tau) * (p.pairs_max - p.pairs_min)));
}

// Convex hull (Andrew's monotone chain), counter-clockwise, no repeated point.
std::vector<float> convex_hull(const std::vector<float>& x, const std::vector<float>& y) {
  const int n = static_cast<int>(x.size());
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](int a, int b) { return x[a] < x[b] || (x[a] == x[b] && y[a] < y[b]); });
  auto cross = [&](int o, int a, int b) {
    return (x[a] - x[o]) * (y[b] - y[o]) - (y[a] - y[o]) * (x[b] - x[o]);
  };
  std::vector<int> h(2 * n + 1);
  int k = 0;
  for (int i = 0; i < n; ++i) {
    while (k >= 2 && cross(h[k - 2], h[k - 1], idx[i]) <= 0) --k;
    h[k++] = idx[i];
  }
  for (int i = n - 2, t = k + 1; i >= 0; --i) {
    while (k >= t && cross(h[k - 2], h[k - 1], idx[i]) <= 0) --k;
    h[k++] = idx[i];
  }
  if (n > 1) --k;
  if (n == 1) k = 1;
  std::vector<float> out;
  for (int i = 0; i < k; ++i) {
    out.push_back(x[h[i]]);
    out.push_back(y[h[i]]);
  }
  return out;
}

inline float seg_dist2(float px, float py, float ax, float ay, float bx, float by) {
  float dx = bx - ax, dy = by - ay;
  float l2 = dx * dx + dy * dy;
  float t = l2 > 0 ? std::clamp(((px - ax) * dx + (py - ay) * dy) / l2, 0.f, 1.f) : 0.f;
  float ex = ax + t * dx - px, ey = ay + t * dy - py;
  return ex * ex + ey * ey;
}

// True when (px, py) lies inside the hull or within `margin` of it.
bool in_hull(const std::vector<float>& hull, float px, float py, float margin) {
  const int m = static_cast<int>(hull.size() / 2);
  if (m == 0) return false;
  bool inside = m >= 3;
  for (int i = 0; i < m && inside; ++i) {
    const int j = i + 1 == m ? 0 : i + 1;
    float ax = hull[2 * i], ay = hull[2 * i + 1], bx = hull[2 * j], by = hull[2 * j + 1];
    if ((bx - ax) * (py - ay) - (by - ay) * (px - ax) < 0) inside = false;
  }
  if (inside) return true;
  const float m2 = margin * margin;
  for (int i = 0; i < m; ++i) {
    const int j = i + 1 == m ? 0 : i + 1;
    if (seg_dist2(px, py, hull[2 * i], hull[2 * i + 1], hull[2 * j], hull[2 * j + 1]) <= m2) return true;
  }
  return false;
}

// Outward unit normals and offsets of the hull edges (nx, ny, off per edge): the signed
// distance of p to edge e's line is nx px + ny py - off, > 0 outside.  Empty for m < 3.
std::vector<float> hull_lines(const std::vector<float>& hull) {
  const int m = static_cast<int>(hull.size() / 2);
  std::vector<float> out;
  if (m < 3) return out;
  for (int i = 0; i < m; ++i) {
    const int j = (i + 1) % m;
    const float ax = hull[2 * i], ay = hull[2 * i + 1], dx = hull[2 * j] - ax, dy = hull[2 * j + 1] - ay;
    const float l = std::sqrt(dx * dx + dy * dy);
    if (!(l > 0)) continue;
    const float nx = dy / l, ny = -dx / l;
    out.push_back(nx);
    out.push_back(ny);
    out.push_back(nx * ax + ny * ay);
  }
  return out;
}

// in_hull(t.hull, px, py, margin), decided by the edge lines when the point is clearly inside
// the hull or clearly farther than margin from one edge's line (hence from the hull); the
// exact test only in the band between.  Same answers, a few times faster.
inline bool in_hull_fast(const Prepared& t, float px, float py, float margin) {
  const int m = static_cast<int>(t.hull_lines.size() / 3);
  if (m < 3) return in_hull(t.hull, px, py, margin);
  const float* h = t.hull_lines.data();
  constexpr float kEps = 0.05f;  // px, far above the rounding of the two tests
  // One edge line farther than margin + kEps: the max below would exceed it too (and not be
  // <= -kEps), so the answer is false; stop there.
  const float far = margin + kEps;
  float mx = -1e30f;
  for (int e = 0; e < m; ++e) {
    const float v = h[3 * e] * px + h[3 * e + 1] * py - h[3 * e + 2];
    if (v > far) return false;
    mx = std::max(mx, v);
  }
  if (mx <= -kEps) return true;
  if (mx > far) return false;
  if (mx > kEps && t.hull.size() == size_t(2 * m)) {
    // Clearly outside one edge's line, so outside the hull (in_hull's inside test fails); edges
    // are 1:1 with the lines here.  Within margin of an edge?  Not of one whose line is farther
    // than margin + kEps (the segment is farther still): its exact test is skipped.
    const float m2 = margin * margin;
    const float* g = t.hull.data();
    for (int i = 0; i < m; ++i) {
      if (h[3 * i] * px + h[3 * i + 1] * py - h[3 * i + 2] > margin + kEps) continue;
      const int j = i + 1 == m ? 0 : i + 1;
      if (seg_dist2(px, py, g[2 * i], g[2 * i + 1], g[2 * j], g[2 * j + 1]) <= m2) return true;
    }
    return false;
  }
  return in_hull(t.hull, px, py, margin);
}

struct Geometry {  // cell geometry shared by prepare() and cylinder_values()
  int ns, nd;
  float ds, dd, r, sig_s, sig_d, gs_norm, reach;
  explicit Geometry(const MccParams& p)
      : ns(p.spatial_cells), nd(p.angular_cells), ds(2.f * p.radius_px / p.spatial_cells),
        dd(kTwoPi / p.angular_cells), r(p.radius_px), sig_s(p.sigma_spatial_px),
        sig_d(p.sigma_angular_deg * kDeg), gs_norm(1.f / (p.sigma_spatial_px * std::sqrt(kTwoPi))),
        reach(3.f * p.sigma_spatial_px) {}
  float centre(int i) const { return ds * (i - 0.5f * (ns - 1)); }
  // Directional contribution C_D: Gaussian area over the angular cell (Section 3.1).
  float angular(int k, float dtheta) const {
    float phi_k = -kPi + (k + 0.5f) * dd;
    float a = wrap_pi(phi_k - dtheta);
    float s = 1.f / (sig_d * std::sqrt(2.f));
    return 0.5f * (std::erf((a + 0.5f * dd) * s) - std::erf((a - 0.5f * dd) * s));
  }
};

void check_params(const MccParams& p) {
  auto bad = [](const char* what) { throw std::invalid_argument(what); };
  if (!(p.radius_px > 0)) bad("radius_px: expected > 0");
  if (p.spatial_cells < 2 || p.spatial_cells > 64) bad("spatial_cells: expected 2..64");
  if (p.angular_cells < 1 || p.angular_cells > 32) bad("angular_cells: expected 1..32");
  if (!(p.sigma_spatial_px > 0) || !(p.sigma_angular_deg > 0)) bad("sigmas: expected > 0");
  if (p.pairs_min < 1 || p.pairs_max < p.pairs_min) bad("pairs_min/pairs_max: expected 1 <= min <= max");
  if (p.relax_iterations < 0 || p.relax_iterations > 100) bad("relax_iterations: expected 0..100");
  if (p.spatial_cells * p.spatial_cells * p.angular_cells >= 65536)
    bad("spatial_cells^2 * angular_cells: expected < 65536");
  const auto& f = p.orientation_scale_from;
  const auto& t = p.orientation_scale_to;
  if (f.size() < 2 || f.size() != t.size())
    bad("orientation_scale_from/orientation_scale_to: expected the same length, >= 2");
  for (size_t k = 0; k < f.size(); ++k) {
    if (!std::isfinite(f[k]) || !std::isfinite(t[k]))
      bad("orientation_scale_from/orientation_scale_to: expected finite numbers");
    if (k > 0 && !(f[k] > f[k - 1] && t[k] > t[k - 1]))
      bad("orientation_scale_from/orientation_scale_to: expected strictly increasing");
  }
}

void compute_cells(const Config& cfg, const float* xyaq, int n, std::vector<float>& xs,
                   std::vector<float>& ys, std::vector<float>& th, std::vector<float>& hull,
                   std::vector<float>* values, std::vector<uint8_t>* valid_cells,
                   std::vector<uint8_t>& cyl_valid, std::vector<uint64_t>* bits,
                   std::vector<uint64_t>* mask, std::vector<uint64_t>* smask) {
  const MccParams& p = cfg.params();
  Geometry g(p);
  const int ns = g.ns, nd = g.nd, plane = ns * ns, words = cfg.words();
  xs.resize(n);
  ys.resize(n);
  th.resize(n);
  for (int i = 0; i < n; ++i) {
    xs[i] = xyaq[4 * i];
    ys[i] = -xyaq[4 * i + 1];  // y-up, so that angles are counter-clockwise
    float t = std::fmod(xyaq[4 * i + 2], kTwoPi);
    th[i] = t < 0 ? t + kTwoPi : t;
  }
  hull = convex_hull(xs, ys);
  cyl_valid.assign(n, 0);
  if (values) values->assign(static_cast<size_t>(n) * nd * plane, 0.f);
  if (valid_cells) valid_cells->assign(static_cast<size_t>(n) * plane, 0);
  if (bits) bits->assign(static_cast<size_t>(n) * words, 0);
  if (mask) mask->assign(static_cast<size_t>(n) * words, 0);
  const int mwords = cfg.mask_words(), disc = cfg.disc_cells() / nd;
  if (smask) smask->assign(static_cast<size_t>(n) * mwords, 0);
  std::vector<float> acc(static_cast<size_t>(nd) * plane);
  std::vector<uint8_t> vc(plane);
  std::vector<float> cd(nd);
  const float reach_nb = g.r + g.reach;
  for (int m = 0; m < n; ++m) {
    const float c = std::cos(th[m]), s = std::sin(th[m]);
    int n_valid = 0;
    for (int i = 0; i < ns; ++i)
      for (int j = 0; j < ns; ++j) {
        float u = g.centre(i), v = g.centre(j);
        bool ok = u * u + v * v <= g.r * g.r &&
                  in_hull(hull, xs[m] + u * c - v * s, ys[m] + u * s + v * c, p.hull_margin_px);
        vc[i * ns + j] = ok;
        n_valid += ok;
      }
    std::fill(acc.begin(), acc.end(), 0.f);
    int neighbours = 0;
    for (int t = 0; t < n; ++t) {
      if (t == m) continue;
      float dx = xs[t] - xs[m], dy = ys[t] - ys[m];
      if (dx * dx + dy * dy > reach_nb * reach_nb) continue;
      ++neighbours;
      float du = dx * c + dy * s, dv = -dx * s + dy * c;
      float dth = wrap_pi(th[t] - th[m]);
      for (int k = 0; k < nd; ++k) cd[k] = g.angular(k, dth);
      int i0 = std::max(0, static_cast<int>(std::floor((du - g.reach) / g.ds + 0.5f * (ns - 1))));
      int i1 = std::min(ns - 1, static_cast<int>(std::ceil((du + g.reach) / g.ds + 0.5f * (ns - 1))));
      int j0 = std::max(0, static_cast<int>(std::floor((dv - g.reach) / g.ds + 0.5f * (ns - 1))));
      int j1 = std::min(ns - 1, static_cast<int>(std::ceil((dv + g.reach) / g.ds + 0.5f * (ns - 1))));
      for (int i = i0; i <= i1; ++i)
        for (int j = j0; j <= j1; ++j) {
          float eu = g.centre(i) - du, ev = g.centre(j) - dv;
          float d2 = eu * eu + ev * ev;
          if (d2 > g.reach * g.reach) continue;
          float cs = g.gs_norm * std::exp(-d2 / (2.f * g.sig_s * g.sig_s));
          for (int k = 0; k < nd; ++k) acc[k * plane + i * ns + j] += cs * cd[k];
        }
    }
    bool valid = n_valid >= p.min_valid_cells_fraction * (cfg.disc_cells() / nd) &&
                 neighbours >= p.min_neighbours;
    cyl_valid[m] = valid;
    if (values) std::copy(acc.begin(), acc.end(), values->begin() + static_cast<size_t>(m) * nd * plane);
    if (valid_cells) std::copy(vc.begin(), vc.end(), valid_cells->begin() + static_cast<size_t>(m) * plane);
    if (bits) {  // packed disc cells: bit k * disc + disc_index(q)
      uint64_t* b = bits->data() + static_cast<size_t>(m) * words;
      uint64_t* mk = mask->data() + static_cast<size_t>(m) * words;
      uint64_t* sm = smask->data() + static_cast<size_t>(m) * mwords;
      for (int q = 0; q < plane; ++q) {
        const int d = cfg.disc_index(q);
        if (!vc[q] || d < 0) continue;
        sm[d >> 6] |= uint64_t(1) << (d & 63);
        for (int k = 0; k < nd; ++k) {
          int bit = k * disc + d;
          mk[bit >> 6] |= uint64_t(1) << (bit & 63);
          if (acc[k * plane + q] > p.cell_threshold) b[bit >> 6] |= uint64_t(1) << (bit & 63);
        }
      }
    }
  }
}

// Bins of the LSS similarity histogram (match(), step 2), filled by the scan.  A power of 2:
// sim * kLssBins >= thr is then exactly sim >= thr / kLssBins.
constexpr int kLssBins = 128;

#define BIOMATCH_SCAN_NAME scan_portable
#include "mcc_scan.inc"
#undef BIOMATCH_SCAN_NAME

#ifdef BIOMATCH_HAVE_AVX512
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512vpopcntdq,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512vpopcntdq,popcnt")
#endif
#define BIOMATCH_SCAN_NAME scan_avx512
#define BIOMATCH_SCAN_AVX512 1
#include "mcc_scan.inc"

#undef BIOMATCH_SCAN_AVX512
#undef BIOMATCH_SCAN_NAME
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

}  // namespace

bool avx512_available() {
#ifdef BIOMATCH_HAVE_AVX512
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vpopcntdq");
#else
  return false;
#endif
}

Config::Config(const MccParams& p, Kernel kernel) : p_(p), kernel_(kernel) {
  check_params(p);
  if (kernel == Kernel::Avx512 && !avx512_available())
    throw std::invalid_argument("kernel: avx512 requested, but this build or CPU lacks AVX-512 VPOPCNTDQ");
  Geometry g(p);
  const int ns = p.spatial_cells;
  disc_index_.assign(ns * ns, -1);
  int disc = 0;
  for (int i = 0; i < ns; ++i)
    for (int j = 0; j < ns; ++j)
      if (g.centre(i) * g.centre(i) + g.centre(j) * g.centre(j) <= p.radius_px * p.radius_px)
        disc_index_[i * ns + j] = disc++;
  disc_cells_ = disc * p.angular_cells;
  words_ = std::max(1, (disc_cells_ + 63) / 64);
  mask_words_ = std::max(1, (disc + 63) / 64);
  min_common_ = static_cast<int>(std::ceil(p.min_matchable_cells_fraction * disc_cells_));
  // Sigmoid tables for the relaxation compatibility rho (Section 4.3); exp() per pair is too slow.
  const int nl = 1024;
  lut_dist_scale_ = nl / 64.f;
  lut_angle_scale_ = nl / kPi;
  lut_dist_.resize(nl + 1);
  lut_angle_.resize(nl + 1);
  for (int i = 0; i <= nl; ++i) {
    lut_dist_[i] = sigmoid((i + 0.5f) / lut_dist_scale_, p.relax_distance_mu_px, p.relax_distance_tau_per_px);
    lut_angle_[i] = sigmoid((i + 0.5f) / lut_angle_scale_, p.relax_angle_mu_deg * kDeg, p.relax_angle_tau_per_rad);
  }
  lut_dist_[nl] = 0.f;
  dist_cutoff_ = nl;  // the table decreases (tau < 0): from this index on, rho is negligible
  while (dist_cutoff_ > 0 && lut_dist_[dist_cutoff_ - 1] < 1e-4f) --dist_cutoff_;
  if (!(p.relax_distance_tau_per_px < 0)) dist_cutoff_ = nl + 1;
  pairs_table_.resize(256);
  for (int n = 0; n < 256; ++n) pairs_table_[n] = pairs_eval(p, n);
  elastic_cos_max_ = std::cos(p.elastic_angle_deg * kDeg);
  elastic_cluster_cos_ = std::cos(p.elastic_cluster_deg * kDeg);
}

int Config::pairs_for(int nmin) const {
  return nmin >= 0 && nmin < static_cast<int>(pairs_table_.size()) ? pairs_table_[nmin] : pairs_eval(p_, nmin);
}

float Config::z_dist(float d) const {
  int i = static_cast<int>(d * lut_dist_scale_);
  return lut_dist_[std::min(i, static_cast<int>(lut_dist_.size()) - 1)];
}

bool Config::z_dist_negligible(float d) const {
  return d * lut_dist_scale_ >= static_cast<float>(dist_cutoff_);
}

float Config::z_angle(float a) const {
  int i = static_cast<int>(a * lut_angle_scale_);
  return lut_angle_[std::min(i, static_cast<int>(lut_angle_.size()) - 1)];
}

namespace {

constexpr uint8_t kGridNone = 180;  // Prepared::grid: a cell without print

// cos and sin of twice each whole-degree orientation, and (0, 0) for kGridNone.
struct DoubledAngles {
  float c[kGridNone + 1], s[kGridNone + 1];
  DoubledAngles() {
    for (int v = 0; v < kGridNone; ++v) {
      const double a2 = 2.0 * v * (3.14159265358979323846 / 180.0);
      c[v] = static_cast<float>(std::cos(a2));
      s[v] = static_cast<float>(std::sin(a2));
    }
    c[kGridNone] = s[kGridNone] = 0.f;
  }
};

const DoubledAngles& doubled_angles() {
  static const DoubledAngles table;  // immutable after its (thread-safe) construction
  return table;
}

}  // namespace

float Config::orientation_scale(float s) const {
  // Segment k holds [from[k], from[k + 1]); the last point's segment continues the last slope
  // (and the first one's below from[0]).  At a point the result is exactly its image; inside a
  // segment it is clamped to the segment's images, so float rounding cannot break monotonicity.
  const std::vector<float>& f = p_.orientation_scale_from;
  const std::vector<float>& t = p_.orientation_scale_to;
  const int last = static_cast<int>(f.size()) - 1;
  int k = 0;
  while (k < last && f[k + 1] <= s) ++k;
  float v;
  if (k == last) {
    v = t[last] + (s - f[last]) * ((t[last] - t[last - 1]) / (f[last] - f[last - 1]));
  } else {
    v = t[k] + (s - f[k]) * ((t[k + 1] - t[k]) / (f[k + 1] - f[k]));
    if (s >= f[0]) v = std::clamp(v, t[k], t[k + 1]);
  }
  return std::clamp(v, 0.f, 1.f);
}

Prepared prepare(const Config& cfg, const float* xyaq, int n, const uint8_t* grid, int rows, int cols) {
  if (n < 0 || n > 65535) throw std::invalid_argument("minutiae: expected at most 65535 rows");
  if (rows < 0 || cols < 0 || rows > 4096 || cols > 4096 || (grid == nullptr && rows * cols > 0))
    throw std::invalid_argument("orientation grid: expected 0..4096 rows and columns");
  Prepared t;
  t.n = n;
  t.words = cfg.words();
  t.mask_words = cfg.mask_words();
  std::vector<uint8_t> valid;
  std::vector<uint64_t> bits, mask, smask;
  compute_cells(cfg, xyaq, n, t.x, t.y, t.theta, t.hull, nullptr, nullptr, valid, &bits, &mask, &smask);
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
  t.dist.resize(static_cast<size_t>(n) * n);
  t.rel.resize(static_cast<size_t>(n) * n);
  t.radial.resize(static_cast<size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      float dx = t.x[j] - t.x[i], dy = t.y[j] - t.y[i];
      t.dist[i * n + j] = std::sqrt(dx * dx + dy * dy);
      // Angles relative to minutia i, in [0, 2pi): direction of j, and of the segment i->j.
      float rel = t.theta[j] - t.theta[i], rad = std::atan2(dy, dx) - t.theta[i];
      rel -= kTwoPi * std::floor(rel / kTwoPi);
      rad -= kTwoPi * std::floor(rad / kTwoPi);
      t.rel[i * n + j] = std::min(rel, std::nextafter(kTwoPi, 0.f));
      t.radial[i * n + j] = std::min(rad, std::nextafter(kTwoPi, 0.f));
    }
  std::vector<int> order;
  for (int i = 0; i < n; ++i)
    if (valid[i]) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int u, int v) { return t.theta[u] < t.theta[v]; });
  const size_t w = t.words, mw = t.mask_words;
  for (int i : order) {
    t.cyl_index.push_back(i);
    t.cyl_theta.push_back(t.theta[i]);
    t.bits.insert(t.bits.end(), bits.begin() + i * w, bits.begin() + (i + 1) * w);
    t.mask.insert(t.mask.end(), mask.begin() + i * w, mask.begin() + (i + 1) * w);
    t.smask.insert(t.smask.end(), smask.begin() + i * mw, smask.begin() + (i + 1) * mw);
    uint64_t nbits = 0, nmask = 0;
    for (size_t u = 0; u < w; ++u) nbits += __builtin_popcountll(bits[i * w + u]);
    for (size_t u = 0; u < mw; ++u) nmask += __builtin_popcountll(smask[i * mw + u]);
    t.cyl_full.push_back(static_cast<int>(nmask) * cfg.params().angular_cells == cfg.disc_cells());
    t.cyl_ones.push_back(nbits << 16 | nmask << 48);
  }
  if (grid != nullptr && rows > 0 && cols > 0) {
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
  std::vector<float> xs, ys, th, hull;
  compute_cells(cfg, xyaq, n, xs, ys, th, hull, &values, &valid_cells, cylinder_valid, nullptr, nullptr, nullptr);
}

namespace {

int scan_pairs(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s) {
#ifdef BIOMATCH_HAVE_AVX512
  if (cfg.kernel() == Kernel::Avx512 && cfg.mask_words() <= 8) {
    const int chunks = (cfg.words() + 7) / 8;
    const bool half = cfg.words() - 8 * (chunks - 1) <= 4 && cfg.mask_words() <= 4;
    switch (chunks * 2 + half) {  // 8-word chunks held in registers; larger cylinders go portable
      case 3: return scan_avx512<1, true>(cfg, a, b, s);
      case 5: return scan_avx512<2, true>(cfg, a, b, s);
      case 7: return scan_avx512<3, true>(cfg, a, b, s);
      case 9: return scan_avx512<4, true>(cfg, a, b, s);
      case 2: return scan_avx512<1>(cfg, a, b, s);
      case 4: return scan_avx512<2>(cfg, a, b, s);
      case 6: return scan_avx512<3>(cfg, a, b, s);
      case 8: return scan_avx512<4>(cfg, a, b, s);
      default: break;
    }
  }
#endif
  return scan_portable<0>(cfg, a, b, s);
}

}  // namespace

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

namespace {

// Least-squares rigid fit B ~ R A + t over weighted pairs (2-D Procrustes).
void fit_rigid(const Prepared& a, const Prepared& b, const int* ia, const int* ib, const float* w, int m,
               float& rot, float& tx, float& ty) {
  double sw = 0, ax = 0, ay = 0, bx = 0, by = 0;
  for (int i = 0; i < m; ++i) {
    sw += w[i];
    ax += w[i] * a.x[ia[i]];
    ay += w[i] * a.y[ia[i]];
    bx += w[i] * b.x[ib[i]];
    by += w[i] * b.y[ib[i]];
  }
  if (sw <= 0) return;
  ax /= sw; ay /= sw; bx /= sw; by /= sw;
  double sc = 0, ss = 0, dc = 0, ds = 0;
  for (int i = 0; i < m; ++i) {
    double px = a.x[ia[i]] - ax, py = a.y[ia[i]] - ay, qx = b.x[ib[i]] - bx, qy = b.y[ib[i]] - by;
    sc += w[i] * (px * qx + py * qy);
    ss += w[i] * (px * qy - py * qx);
    float d = b.theta[ib[i]] - a.theta[ia[i]];
    dc += w[i] * std::cos(d);
    ds += w[i] * std::sin(d);
  }
  // Positions fix the rotation well when spread out; minutia directions when not.
  double spread = std::hypot(sc, ss);
  double ang = spread > 1e-6 ? std::atan2(ss + ds * 50.0, sc + dc * 50.0) : std::atan2(ds, dc);
  rot = static_cast<float>(ang);
  float c = std::cos(rot), s = std::sin(rot);
  tx = static_cast<float>(bx - (c * ax - s * ay));
  ty = static_cast<float>(by - (s * ax + c * ay));
}

// Greedy one-to-one pairing of minutiae consistent with the transform.
int count_consistent(const MccParams& p, const Prepared& a, const Prepared& b, float rot, float tx, float ty,
                     Scratch& s, std::vector<int>* pa, std::vector<int>* pb) {
  const float c = std::cos(rot), sn = std::sin(rot);
  const float d2max = p.global_max_distance_px * p.global_max_distance_px;
  const float amax = p.global_max_angle_deg * kDeg;
  s.cand.clear();
  for (int i = 0; i < a.n; ++i) {
    float X = c * a.x[i] - sn * a.y[i] + tx, Y = sn * a.x[i] + c * a.y[i] + ty;
    float T = a.theta[i] + rot;
    for (int j = 0; j < b.n; ++j) {
      float dx = b.x[j] - X, dy = b.y[j] - Y;
      float d2 = dx * dx + dy * dy;
      if (d2 > d2max) continue;
      if (std::fabs(wrap_pi(b.theta[j] - T)) > amax) continue;
      s.cand.push_back(d2);
      s.cand.push_back(static_cast<float>(i));
      s.cand.push_back(static_cast<float>(j));
    }
  }
  const int m = static_cast<int>(s.cand.size() / 3);
  s.order.resize(m);
  std::iota(s.order.begin(), s.order.end(), 0);
  std::sort(s.order.begin(), s.order.end(), [&](int u, int v) {
    return s.cand[3 * u] < s.cand[3 * v] || (s.cand[3 * u] == s.cand[3 * v] && u < v);
  });
  std::vector<uint8_t> ua(a.n, 0), ub(b.n, 0);
  int count = 0;
  for (int q : s.order) {
    int i = static_cast<int>(s.cand[3 * q + 1]), j = static_cast<int>(s.cand[3 * q + 2]);
    if (ua[i] || ub[j]) continue;
    ua[i] = ub[j] = 1;
    ++count;
    if (pa) { pa->push_back(i); pb->push_back(j); }
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
// W lanes of B minutiae at a time: 4 (one SSE register on the baseline x86-64 target) or,
// compiled under an AVX-512 target attribute, 16.  Element-wise IEEE operations: the same
// bits for any W.
template <int W> struct Lanes;
template <> struct Lanes<4> {
  typedef float f __attribute__((vector_size(16)));
  typedef int32_t i __attribute__((vector_size(16)));
};
template <> struct Lanes<16> {
  typedef float f __attribute__((vector_size(64)));
  typedef int32_t i __attribute__((vector_size(64)));
};

#ifdef BIOMATCH_HAVE_AVX512
// One row of elastic_count_w<16> fused: the relative errors of minutia (X, Y, direction cT, sT)
// of A against every B minutia (the same operations as the vector-extension loop there), and
// the keys of the agreeing j (rel <= 1 and directions within cos_max), in order, written from
// out on (whole vectors of 8: up to 8 entries past the last key are overwritten).  Returns the end.
__attribute__((target("avx512f,avx512vl"))) inline uint64_t* elastic_row_avx512(
    const float* xb, const float* yb, const float* cb, const float* sb, int nb, float X, float Y, float inv_tol2,
    float cT, float sT, float cos_max, int i, uint64_t* out) {
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

template <int W>
__attribute__((always_inline)) inline int elastic_count_w(const MccParams& p, const Prepared& a, const Prepared& b,
                                                          int ia, int ib, Scratch& s, int beat, float c, float sn,
                                                          float cos_max) {
  typedef typename Lanes<W>::f v4;
  typedef typename Lanes<W>::i i4;
  const float d0 = p.elastic_distance_px, f = p.elastic_distance_fraction;
  const float ax = a.x[ia], ay = a.y[ia], bx = b.x[ib], by = b.y[ib];
  const float* da = &a.dist[size_t(ia) * a.n];
  const int nb = b.n, npad = b.npad, nloop = (nb + W - 1) / W * W;  // npad: a multiple of 16
  if (s.erel.size() < size_t(npad)) s.erel.resize(npad);
  float* __restrict rel = s.erel.data();
  // b.soa: x, y, cos, sin of B, each padded to npad (padding far away, never agrees).
  const float* __restrict xb = b.soa.data();
  const float* __restrict yb = xb + npad;
  const float* __restrict cb = yb + npad;
  const float* __restrict sb = cb + npad;
  // Keys of the agreeing pairs: at most nb per minutia of A, + 8 for whole-vector stores.
  if (s.ekeys.size() < size_t(a.n) * nb + 8) s.ekeys.resize(size_t(a.n) * nb + 8);  // grows only
  uint64_t* __restrict ek = s.ekeys.data();
  size_t ne = 0;
  int rows = 0;  // minutiae of A with at least one candidate: bounds the count
#ifdef BIOMATCH_HAVE_AVX512
  if constexpr (W == 16) {
    // First, for every minutia of A (vectorisable; per element the same operations as the
    // loop below): its position and direction under the alignment and 1 / tol^2, and whether
    // it lies within reach of B's bounding box; then only those rows, in order (the others
    // have no candidate, so the bound rows + rows left counts only these).
    const int na = a.n;
    if (s.erow.size() < size_t(5) * na) s.erow.resize(size_t(5) * na);
    if (s.eidx.size() < size_t(na)) s.eidx.resize(na);
    float* __restrict RX = s.erow.data();
    float* __restrict RY = RX + na;
    float* __restrict RI = RY + na;
    float* __restrict RC = RI + na;
    float* __restrict RS = RC + na;
    int* __restrict idx = s.eidx.data();
    const float* __restrict axp = a.x.data();
    const float* __restrict ayp = a.y.data();
    const float* __restrict acp = a.cos_theta.data();
    const float* __restrict asp = a.sin_theta.data();
    const float x0 = b.bbox[0], y0 = b.bbox[1], x1 = b.bbox[2], y1 = b.bbox[3];
    for (int i = 0; i < na; ++i) {
      const float dx = axp[i] - ax, dy = ayp[i] - ay;
      const float X = bx + c * dx - sn * dy, Y = by + sn * dx + c * dy;
      const float tol = d0 + f * da[i];
      const float reach = 1.001f * tol + 1e-3f;
      const bool out = X < x0 - reach || X > x1 + reach || Y < y0 - reach || Y > y1 + reach;
      RX[i] = X;
      RY[i] = Y;
      RI[i] = out ? -1.f : 1.f / (tol * tol);  // -1: out of reach
      RC[i] = acp[i] * c - asp[i] * sn;
      RS[i] = asp[i] * c + acp[i] * sn;
    }
    int nin = 0;
    for (int i = 0; i < na; ++i) {  // branch-free compaction
      idx[nin] = i;
      nin += RI[i] >= 0.f;
    }
    for (int u = 0; u < nin; ++u) {
      if (rows + (nin - u) <= beat) return rows + (nin - u);
      const int i = idx[u];
      uint64_t* const end =
          elastic_row_avx512(xb, yb, cb, sb, nb, RX[i], RY[i], RI[i], RC[i], RS[i], cos_max, i, ek + ne);
      if (end == ek + ne) continue;
      ++rows;
      ne = end - ek;
    }
  } else
#endif
  for (int i = 0; i < a.n; ++i) {
    if (rows + (a.n - i) <= beat) return rows + (a.n - i);
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
    ++rows;
    // The keys of the agreeing j, in order (relative error bits: >= 0, so they sort like it).
    {
      for (int j = 0; j < nb; ++j) {  // branch-free: every key is written, kept ones advance ne
        uint32_t rbits;
        std::memcpy(&rbits, &rel[j], sizeof rbits);
        ek[ne] = (uint64_t(rbits) << 32) | (uint32_t(i) << 16) | uint32_t(j);
        ne += rel[j] <= 1.f;
      }
    }
  }
  if (rows <= beat) return rows;
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

#ifdef BIOMATCH_HAVE_AVX512
__attribute__((target("avx512f,avx512vl"))) int elastic_count_avx512(const MccParams& p, const Prepared& a,
                                                                      const Prepared& b, int ia, int ib,
                                                                      Scratch& s, int beat, float c, float sn,
                                                                      float cos_max) {
  return elastic_count_w<16>(p, a, b, ia, ib, s, beat, c, sn, cos_max);
}
#endif

// c, sn: cos and sin of the alignment's rotation (B direction - A direction of the anchor, or a
// refined one), computed by the caller (once per anchor).
int elastic_count(const Config& cfg, const Prepared& a, const Prepared& b, int ia, int ib, Scratch& s, int beat,
                  float c, float sn) {
#ifdef BIOMATCH_HAVE_AVX512
  if (cfg.kernel() == Kernel::Avx512)
    return elastic_count_avx512(cfg.params(), a, b, ia, ib, s, beat, c, sn, cfg.elastic_cos_max());
#endif
  return elastic_count_w<4>(cfg.params(), a, b, ia, ib, s, beat, c, sn, cfg.elastic_cos_max());
}

}  // namespace

namespace {

// Relaxation iterations (Section 4.3) on the transposed compatibility matrix rho (rows of
// `stride` floats): blocks of 16 t held in one vector, summing over k in order.  GCC/Clang
// vector extensions: element-wise IEEE operations, the same bits on any target (SSE pairs on
// the baseline, one AVX-512 register under the target attribute).  The result is left in l1.
__attribute__((always_inline)) inline void relax_w(const float* rho, int nr, int stride, float wr, float norm,
                                                   int iterations, std::vector<float>& v1, std::vector<float>& v2) {
  typedef float v16 __attribute__((vector_size(64)));
  for (int it = 0; it < iterations; ++it) {
    float* __restrict l2 = v2.data();
    const float* __restrict l1 = v1.data();
    // Two blocks per pass over k when they exist: two independent accumulation chains (each
    // sum is latency-bound).  Per element the same sum in the same order.
    int t0 = 0;
    for (; t0 + 32 <= stride; t0 += 32) {
      v16 acc0 = {}, acc1 = {};
      for (int k = 0; k < nr; ++k) {
        v16 row0, row1;
        std::memcpy(&row0, rho + size_t(k) * stride + t0, sizeof row0);
        std::memcpy(&row1, rho + size_t(k) * stride + t0 + 16, sizeof row1);
        acc0 += row0 * l1[k];
        acc1 += row1 * l1[k];
      }
      v16 prev0, prev1, out0, out1;
      std::memcpy(&prev0, l1 + t0, sizeof prev0);
      std::memcpy(&prev1, l1 + t0 + 16, sizeof prev1);
      out0 = wr * prev0 + norm * acc0;
      out1 = wr * prev1 + norm * acc1;
      std::memcpy(l2 + t0, &out0, sizeof out0);
      std::memcpy(l2 + t0 + 16, &out1, sizeof out1);
    }
    for (; t0 < stride; t0 += 16) {
      v16 acc = {};
      for (int k = 0; k < nr; ++k) {
        v16 row;
        std::memcpy(&row, rho + size_t(k) * stride + t0, sizeof row);
        acc += row * l1[k];
      }
      v16 prev, out;
      std::memcpy(&prev, l1 + t0, sizeof prev);
      out = wr * prev + norm * acc;
      std::memcpy(l2 + t0, &out, sizeof out);
    }
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
__attribute__((target("avx512f,avx512vl"), always_inline)) inline __m512i lookup64(__m512i idx, const __m512i* t) {
  const __m512i lo = _mm512_permutex2var_epi32(t[0], idx, t[1]);  // index bits 0..4
  const __m512i hi = _mm512_permutex2var_epi32(t[2], idx, t[3]);
  return _mm512_mask_blend_epi32(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), lo, hi);
}

// The first min(n, 64) entries of row in 4 vectors (zeros past n), for lookup64.
__attribute__((target("avx512f,avx512vl"), always_inline)) inline void load64(const void* row, int n, __m512i* t) {
  for (int u = 0; u < 4; ++u) {
    const int left = n - 16 * u;
    const __mmask16 m = left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
    t[u] = _mm512_maskz_loadu_epi32(m, static_cast<const int*>(row) + 16 * u);
  }
}

// near_pairs, 16 k at a time (gathers and an in-register compression; the same comparison of
// the same products, so the same set), written as pair codes t << 16 | k.  near needs room
// for 16 entries past the last.
__attribute__((target("avx512f,avx512vl"))) inline int near_pairs_avx512(const Config& cfg, const float* da,
                                                                         const float* db, int na, int nb,
                                                                         const int* ra, const int* rb, int t, int nr,
                                                                         int* __restrict near) {
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
    nk += __builtin_popcount(keep);
    vk = _mm512_add_epi32(vk, _mm512_set1_epi32(16));
  }
  return nk;
}
#endif

// Compatibility rho of every two relaxation pairs (see match(), step 3), the same bits under
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
// Helpers of build_rho_avx512 (free functions: a lambda would not inherit its target).
__attribute__((target("avx512f,avx512vl"), always_inline)) inline __m512 gather16(__mmask16 live, __m512i idx,
                                                                                 const float* base) {
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, idx, base, 4);
}

// table[min(int(v * scale), last)], as Config::z_dist / z_angle.
__attribute__((target("avx512f,avx512vl"), always_inline)) inline __m512 lut16(__mmask16 live, const float* table,
                                                                              __m512 v, __m512 scale, __m512i last) {
  return gather16(live, _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_mul_ps(v, scale)), last), table);
}

// abs_angle_diff: min(d, 2pi - d) with d = |x - y|, as std::min(d, 2pi - d).
__attribute__((target("avx512f,avx512vl"), always_inline)) inline __m512 angle_diff16(__m512 x, __m512 y) {
  const __m512 d = _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(_mm512_sub_ps(x, y)), _mm512_set1_epi32(0x7fffffff)));
  return _mm512_min_ps(_mm512_sub_ps(_mm512_set1_ps(kTwoPi), d), d);
}

// build_rho_w with vectors: first the codes of all non-negligible pairs (t, k), then their
// compatibilities 16 at a time (gathers of the table entries, the same operations in the same
// order per element as build_rho_w, scattered into rho).  near needs room for
// nr (nr - 1) / 2 + 16 entries.
__attribute__((target("avx512f,avx512vl"))) void build_rho_avx512(const Config& cfg, const Prepared& a,
                                                                   const Prepared& b, const int* ra, const int* rb,
                                                                   int nr, int stride, int* near, float* rho) {
  int total = 0;
  for (int t = 0; t < nr; ++t)
    total += near_pairs_avx512(cfg, &a.dist[size_t(ra[t]) * a.n], &b.dist[size_t(rb[t]) * b.n], a.n, b.n, ra, rb,
                               t, nr, near + total);
  const __m512 ds = _mm512_set1_ps(cfg.dist_scale()), as = _mm512_set1_ps(cfg.angle_scale());
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), last = _mm512_set1_epi32(cfg.lut_size() - 1);
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
    const __m512 d1 = _mm512_castsi512_ps(_mm512_and_si512(
        _mm512_castps_si512(_mm512_sub_ps(gather16(live, ia, a.dist.data()), gather16(live, ib, b.dist.data()))),
        abs_mask));
    const __m512 a1 = angle_diff16(gather16(live, ia, a.rel.data()), gather16(live, ib, b.rel.data()));
    const __m512 z = _mm512_mul_ps(lut16(live, lut_d, d1, ds, last), lut16(live, lut_a, a1, as, last));
    const __m512 a2 = angle_diff16(gather16(live, ia, a.radial.data()), gather16(live, ib, b.radial.data()));
    const __m512 r1 = _mm512_mul_ps(z, lut16(live, lut_a, a2, as, last));
    _mm512_mask_i32scatter_ps(rho, live, _mm512_add_epi32(_mm512_mullo_epi32(vk, vstride), vt), r1, 4);
    const __m512i ia2 = _mm512_add_epi32(_mm512_mullo_epi32(ak, vna), at);  // (ak, at)
    const __m512i ib2 = _mm512_add_epi32(_mm512_mullo_epi32(bk, vnb), bt);
    const __m512 a3 = angle_diff16(gather16(live, ia2, a.radial.data()), gather16(live, ib2, b.radial.data()));
    const __m512 r2 = _mm512_mul_ps(z, lut16(live, lut_a, a3, as, last));
    _mm512_mask_i32scatter_ps(rho, live, _mm512_add_epi32(_mm512_mullo_epi32(vt, vstride), vk), r2, 4);
  }
}
#endif

#ifdef BIOMATCH_HAVE_AVX512
__attribute__((target("avx512f,avx512vl"))) void relax_avx512(const float* rho, int nr, int stride, float wr,
                                                               float norm, int iterations, std::vector<float>& v1,
                                                               std::vector<float>& v2) {
  relax_w(rho, nr, stride, wr, norm, iterations, v1, v2);
}
#endif

// The global rigid transform of match() step 6: fitted on the LSS-R top pairs, refined once on
// the minutiae it pairs one-to-one.
struct GlobalFit {
  float rot = 0, tx = 0, ty = 0;
  int nc = 0;
  std::vector<int> ca, cb;
};

void global_fit(const MccParams& p, const Prepared& a, const Prepared& b, Scratch& s, int ntop, GlobalFit& g) {
  fit_rigid(a, b, s.ta.data(), s.tb.data(), s.tw.data(), ntop, g.rot, g.tx, g.ty);
  g.nc = count_consistent(p, a, b, g.rot, g.tx, g.ty, s, &g.ca, &g.cb);
  if (g.nc >= 3) {
    std::vector<float> ones(g.nc, 1.f);
    float r2 = g.rot, x2 = g.tx, y2 = g.ty;
    fit_rigid(a, b, g.ca.data(), g.cb.data(), ones.data(), g.nc, r2, x2, y2);
    std::vector<int> ca2, cb2;
    int nc2 = count_consistent(p, a, b, r2, x2, y2, s, &ca2, &cb2);
    if (nc2 > g.nc) {
      g.nc = nc2; g.rot = r2; g.tx = x2; g.ty = y2;
      g.ca.swap(ca2); g.cb.swap(cb2);
    }
  }
}

// Least-squares rotation and translation B ~ R A + t (positions only, double sums in the order
// of A's minutiae) over the pairs of part (1 + partner in B per minutia of A, 0: none).
void refit_pairs(const Prepared& a, const Prepared& b, const std::vector<int>& part, float& rot, float& tx,
                 float& ty) {
  double ax = 0, ay = 0, bx = 0, by = 0;
  int m = 0;
  for (int i = 0; i < a.n; ++i) {
    if (!part[i]) continue;
    const int j = part[i] - 1;
    ax += a.x[i]; ay += a.y[i]; bx += b.x[j]; by += b.y[j];
    ++m;
  }
  ax /= m; ay /= m; bx /= m; by /= m;
  double sc = 0, ss = 0;
  for (int i = 0; i < a.n; ++i) {
    if (!part[i]) continue;
    const int j = part[i] - 1;
    const double ux = a.x[i] - ax, uy = a.y[i] - ay, vx = b.x[j] - bx, vy = b.y[j] - by;
    sc += ux * vx + uy * vy;
    ss += ux * vy - uy * vx;
  }
  const double r = std::atan2(ss, sc), c = std::cos(r), sn = std::sin(r);
  rot = static_cast<float>(r);
  tx = static_cast<float>(bx - (c * ax - sn * ay));
  ty = static_cast<float>(by - (sn * ax + c * ay));
}

// Orientation agreement A2 of B's grid with A's under B ~ R(rot) A + t: each valid block centre c
// of B goes to R^T (c - t) in A's frame, its orientation (image axes) turns by +rot; A2 = the mean
// cos 2(o_A - o_B') over the centres landing on a valid block of A (0 when none), n their number.
// Two passes: the mapping, element-wise (vectorised by the compiler; IEEE operations without
// contraction give the same bits at any width), then the sum in block order, branch-free (where a
// block lands is unpredictable): blocks off A's print read a cell of (0, 0) and add exact zeros.
// One implementation for every kernel.
void orientation_agreement(const Prepared& a, const Prepared& b, float rot, float tx, float ty, Scratch& s,
                           float& agree, int& n) {
  const float cr = std::cos(rot), sr = std::sin(rot), c2 = std::cos(2.f * rot), s2 = std::sin(2.f * rot);
  constexpr float inv = 1.f / kOrientationBlockPx;  // a power of 2: px * inv is exactly px / B
  const float w = float(a.grid_cols * kOrientationBlockPx), h = float(a.grid_rows * kOrientationBlockPx);
  const int cols = a.grid_cols, outside = a.grid_rows * a.grid_cols;  // the extra (0, 0) cell
  const size_t np = b.grid_px.size();  // padded: far away, never inside
  if (s.oidx.size() < np) {
    s.oidx.resize(np);
    s.oqc.resize(np);
    s.oqs.resize(np);
  }
  int* __restrict oidx = s.oidx.data();
  float* __restrict oqc = s.oqc.data();
  float* __restrict oqs = s.oqs.data();
  const float* __restrict bx = b.grid_px.data();
  const float* __restrict by = b.grid_py.data();
  const float* __restrict bc = b.grid_pc.data();
  const float* __restrict bs = b.grid_ps.data();
  for (size_t k = 0; k < np; ++k) {
    const float dx = bx[k] - tx, dy = by[k] - ty;
    const float px = cr * dx + sr * dy, py = sr * dx - cr * dy;  // A's frame, image axes (y down)
    const bool in = px >= 0.f && px < w && py >= 0.f && py < h;
    const int idx = static_cast<int>(py * inv) * cols + static_cast<int>(px * inv);
    oidx[k] = in ? idx : outside;
    oqc[k] = c2 * bc[k] - s2 * bs[k];
    oqs[k] = s2 * bc[k] + c2 * bs[k];
  }
  const uint8_t* grid = a.grid.data();
  const DoubledAngles& da = doubled_angles();
  double sum = 0.0;  // hundreds of terms near 1: a float sum would lose ~1e-5
  int cnt = 0;
  for (int k = 0; k < b.grid_n; ++k) {
    const int v = grid[oidx[k]];
    sum += da.c[v] * oqc[k] + da.s[v] * oqs[k];
    cnt += v != kGridNone;
  }
  agree = cnt ? static_cast<float>(sum / cnt) : 0.f;
  n = cnt;
}

}  // namespace

float match(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, Explanation* ex) {
  const MccParams& p = cfg.params();
  if (ex) {
    ex->valid_cylinders_a = static_cast<int>(a.cyl_index.size());
    ex->valid_cylinders_b = static_cast<int>(b.cyl_index.size());
  }
  if (a.n < p.min_minutiae || b.n < p.min_minutiae) return 0.f;
  if (a.words != cfg.words() || b.words != cfg.words() || a.mask_words != cfg.mask_words() ||
      b.mask_words != cfg.mask_words())
    throw std::invalid_argument("templates prepared with other parameters");

  // 1. Local similarities of all direction-compatible valid cylinder pairs (Section 4.1).
  const int total = scan_pairs(cfg, a, b, s);
  const float* sim = s.sim.data();
  const int nmin = std::min(a.n, b.n);
  const int np = cfg.pairs_for(nmin);

  // 2. LSS: the n_R = min(nA, nB) most similar pairs (Section 4.2), ties broken by the lower
  //    (minutia_a, minutia_b).  A histogram of the similarities finds the threshold; only the
  //    pairs at or above it become sort keys.
  //    Branch-free: pairs without similarity (sim = 0) go to the extra bin kBins + 1.
  //    Four interleaved histograms, summed after: consecutive pairs mostly fall in the same
  //    few bins, and one histogram would serialise their increments through memory.
  constexpr int kBins = kLssBins;
  int hist4[4][kBins + 2] = {};
  const uint8_t* bins = s.bins.data();  // computed by the scan
  auto bin_of = [&](int t) { return bins[t]; };
  int t4 = 0;
  for (; t4 + 4 <= total; t4 += 4) {
    ++hist4[0][bin_of(t4)];
    ++hist4[1][bin_of(t4 + 1)];
    ++hist4[2][bin_of(t4 + 2)];
    ++hist4[3][bin_of(t4 + 3)];
  }
  for (; t4 < total; ++t4) ++hist4[0][bin_of(t4)];
  int hist[kBins + 2];
  for (int u = 0; u < kBins + 2; ++u) hist[u] = hist4[0][u] + hist4[1][u] + hist4[2][u] + hist4[3][u];
  const int positive = total - hist[kBins + 1];
  if (positive == 0) return 0.f;
  const int nr = std::min(nmin, positive);
  int thr = kBins;
  for (int cum = hist[kBins]; cum < nr;) cum += hist[--thr];
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
  {  // 8 pairs at a time, compressed in order (the same keys in the same order as the loop below)
    const __m256i vlim = _mm256_set1_epi32(static_cast<int>(lim));
    const __m256i ones = _mm256_set1_epi32(-1);
    for (; t + 8 <= total; t += 8) {
      const __m256i g = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sim + t));
      const __mmask8 keep = _mm256_cmpge_epu32_mask(g, vlim);
      // Branch-free, and compressed in a register then stored whole (keys has 8 spare
      // entries): few blocks keep a pair, unpredictably, and a compressing store to memory
      // is microcoded on some cores (Zen 4).
      const __m256i c = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(code + t)), ones);
      const __m512i k = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(g), 32), _mm512_cvtepu32_epi64(c));
      _mm512_storeu_si512(keys + m, _mm512_maskz_compress_epi64(keep, k));
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
  const int* ra = s.ra.data();
  const int* rb = s.rb.data();

  // 3. Relaxation (Section 4.3): compatibility rho(t, k) of every two pairs, then n_rel
  //    iterations.  d1 and d2 are symmetric in (t, k), d3 is not (the angle of the segment
  //    t -> k is taken relative to t's direction), so both orders are computed; the matrix is
  //    stored transposed, rho[k * stride + t] = rho(t, k), for the column-block update below.
  s.rho.assign(size_t(nr) * stride, 0.f);
  if (s.near.size() < size_t(nr) * nr / 2 + 16) s.near.resize(size_t(nr) * nr / 2 + 16);
  float* rho = s.rho.data();
#ifdef BIOMATCH_HAVE_AVX512
  // (32-bit table indices and pair codes t << 16 | k in the vector code)
  if (cfg.kernel() == Kernel::Avx512 && a.n < 32768 && b.n < 32768)
    build_rho_avx512(cfg, a, b, ra, rb, nr, stride, s.near.data(), rho);
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
#ifdef BIOMATCH_HAVE_AVX512
  if (cfg.kernel() == Kernel::Avx512)
    relax_avx512(rho, nr, stride, wr, norm, p.relax_iterations, s.l1, s.l2);
  else
#endif
    relax_w(rho, nr, stride, wr, norm, p.relax_iterations, s.l1, s.l2);
  // 4. The n_P pairs of highest efficiency lambda^n_rel / lambda^0; score = their mean lambda^n_rel.
  //    Efficiencies are >= 0, so their float bits sort like them; ties go to the lower t.
  s.keys2.resize(nr);
  for (int t = 0; t < nr; ++t) {
    const float e = s.l1[t] / s.l0[t];
    uint32_t ebits;
    std::memcpy(&ebits, &e, sizeof ebits);
    s.keys2[t] = (uint64_t(ebits) << 32) | uint32_t(~uint32_t(t));
  }
  const int ntop = std::min(np, nr);
  uint64_t* ek = s.keys2.data();
  if (ntop < nr) std::nth_element(ek, ek + ntop, ek + nr, std::greater<uint64_t>());
  std::sort(ek, ek + ntop, std::greater<uint64_t>());
  s.order.resize(ntop);
  for (int q = 0; q < ntop; ++q) s.order[q] = static_cast<int>(~static_cast<uint32_t>(ek[q]));
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
  const float lssr = std::clamp(sum / float(np), 0.f, 1.f);

  // 5. Elastic consistency (biomatch's addition, a second stage as in elastic/Bozorth-like
  //    matchers): each of the first elastic_anchors top pairs anchors a transform (its
  //    minutiae superposed, its direction difference as rotation); the anchor pairing the most
  //    minutiae wins (its rotation refitted once on what it paired), elastic = n_e^2 / (overlap_a * overlap_b) with the overlaps counted as
  //    for the global term (floor n_P max), and score = lssr^(1-w) * elastic^w.  Pairs with
  //    lssr < elastic_gate skip the stage and score lssr (< the gate: every score >= the gate
  //    is exactly the ungated one; see biomatch/match.py).
  float elastic = 0.f, fused = lssr;
  int best_q = -1, ne = 0, eova = 0, eovb = 0;
  float best_c = 1.f, best_s = 0.f;  // cos, sin of the best rotation
  const bool staged = p.elastic_anchors > 0 && lssr >= p.elastic_gate;
  if (staged) {
    const int nq = std::min(p.elastic_anchors, ntop);
    // Anchors giving about the same alignment as one already tried are skipped: an anchor
    // paired under the best anchor so far (s.epart holds, per minutia of A, 1 + its partner
    // in B), or one whose direction and position the alignment of a tried anchor maps within
    // elastic_cluster_deg and elastic_cluster_px of its partner (relaxation favours mutually
    // consistent pairs, so the top pairs come in clusters, impostors' too).
    const float cl_d2 = p.elastic_cluster_px * p.elastic_cluster_px, cl_cos = cfg.elastic_cluster_cos();
    int nev = 0;
    s.etried.resize(size_t(6) * nq);
    float* ev = s.etried.data();
    for (int q = 0; q < nq; ++q) {
      if (best_q >= 0 && s.tb[q] + 1 == s.epart[s.ta[q]]) continue;
      const int qa = s.ta[q], qb = s.tb[q];
      bool dup = false;
      for (int e = 0; e < nev && !dup; ++e) {
        const float* E = ev + 6 * e;
        const float cq = a.cos_theta[qa] * E[4] - a.sin_theta[qa] * E[5], sq = a.sin_theta[qa] * E[4] + a.cos_theta[qa] * E[5];
        if (cq * b.cos_theta[qb] + sq * b.sin_theta[qb] < cl_cos) continue;
        const float dx = a.x[qa] - E[0], dy = a.y[qa] - E[1];
        const float ex = E[2] + E[4] * dx - E[5] * dy - b.x[qb], ey = E[3] + E[5] * dx + E[4] * dy - b.y[qb];
        dup = ex * ex + ey * ey < cl_d2;
      }
      if (dup) continue;
      const float r = b.theta[qb] - a.theta[qa], rc = std::cos(r), rs = std::sin(r);
      if (p.elastic_cluster_px > 0) {
        float* E = ev + 6 * nev++;
        E[0] = a.x[qa]; E[1] = a.y[qa]; E[2] = b.x[qb]; E[3] = b.y[qb]; E[4] = rc; E[5] = rs;
      }
      const int c = elastic_count(cfg, a, b, qa, qb, s, ne, rc, rs);
      if (c > ne) {
        ne = c;
        best_q = q;
        best_c = rc;
        best_s = rs;
        s.epart.assign(a.n, 0);
        for (size_t u = 0; u < s.ea.size(); ++u) s.epart[s.ea[u]] = s.eb[u] + 1;
      }
    }
    // The rotation of one minutia pair's directions is off by its direction errors (a few
    // degrees move far minutiae by more than the tolerance): refit it once, in the least-squares
    // sense about the anchor, on the minutiae the best anchor paired, and keep the better count.
    if (best_q >= 0 && ne >= 3) {
      const int ia = s.ta[best_q], ib = s.tb[best_q];
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
      const int c = elastic_count(cfg, a, b, ia, ib, s, ne, c2, s2);
      if (c > ne) {
        ne = c;
        best_c = c2;
        best_s = s2;
        s.epart.assign(a.n, 0);  // the best anchor's pairs, for the orientation term
        for (size_t u = 0; u < s.ea.size(); ++u) s.epart[s.ea[u]] = s.eb[u] + 1;
      }
    }
    if (best_q >= 0) {
      const int ia = s.ta[best_q], ib = s.tb[best_q];
      const float c = best_c, sn = best_s;
      const float m = p.elastic_distance_px;
      for (int i = 0; i < a.n; ++i) {
        const float dx = a.x[i] - a.x[ia], dy = a.y[i] - a.y[ia];
        eova += in_hull_fast(b, b.x[ib] + c * dx - sn * dy, b.y[ib] + sn * dx + c * dy, m);
      }
      for (int j = 0; j < b.n; ++j) {
        const float dx = b.x[j] - b.x[ib], dy = b.y[j] - b.y[ib];
        eovb += in_hull_fast(a, a.x[ia] + c * dx + sn * dy, a.y[ia] - sn * dx + c * dy, m);
      }
      const float fl = float(p.pairs_max);
      elastic = std::clamp(float(ne) * float(ne) / (std::max(float(eova), fl) * std::max(float(eovb), fl)), 0.f, 1.f);
    }
    const float w = p.elastic_weight;
    fused = w == 0.5f ? std::sqrt(lssr * elastic) : std::pow(lssr, 1.f - w) * std::pow(elastic, w);
    if (ex) {
      if (best_q >= 0) {
        elastic_count(cfg, a, b, s.ta[best_q], s.tb[best_q], s, -1, best_c, best_s);
      } else {
        s.ea.clear();
        s.eb.clear();
      }
      ex->elastic_a = s.ea;
      ex->elastic_b = s.eb;
      ex->elastic_anchor = best_q;
      ex->n_elastic = ne;
      ex->elastic_overlap_a = eova;
      ex->elastic_overlap_b = eovb;
      ex->elastic_score = elastic;
    }
  }
  // 6. Orientation-field agreement (non-minutiae evidence): pairs that went through the elastic
  //    stage, both templates with a grid: the best anchor's pairs (>= 3) fix a rigid transform
  //    by least squares (else the global transform of step 7), A2 = the mean cos 2(difference)
  //    of the overlapping valid blocks, score *= 1 - w + w * max(A2, 0).  Gated pairs keep lssr.
  GlobalFit g;
  bool have_global = false;
  float ori_factor = 1.f;
  const float ow = p.orientation_weight;
  // The factor applies (and with it the mapping onto the minutiae-only scale, step 8).
  const bool ori_applied = staged && fused > 0.f && a.has_grid() && b.has_grid() && ow > 0.f;
  if (staged && fused > 0.f && a.has_grid() && b.has_grid() && (ow > 0.f || ex)) {
    float orot, otx, oty, agree;
    int nov;
    if (ne >= 3 && best_q >= 0) {
      refit_pairs(a, b, s.epart, orot, otx, oty);
    } else {
      global_fit(p, a, b, s, ntop, g);
      have_global = true;
      orot = g.rot; otx = g.tx; oty = g.ty;
    }
    orientation_agreement(a, b, orot, otx, oty, s, agree, nov);
    ori_factor = 1.f - ow + ow * std::max(agree, 0.f);
    if (ex) {
      ex->orientation_used = true;
      ex->orientation_agreement = agree;
      ex->orientation_blocks = nov;
      ex->orientation_rot = orot;
      ex->orientation_tx = otx;
      ex->orientation_ty = oty;
      ex->orientation_factor = ori_factor;
    }
  }
  if (p.global_weight <= 0.f && ex == nullptr) return ori_applied ? cfg.orientation_scale(fused * ori_factor) : fused;
  const std::vector<int>& ta = s.ta;
  const std::vector<int>& tb = s.tb;

  // 7. Global consistency: one rigid transform from the LSS-R pairs, refined once on the
  //    minutiae it pairs; score = n_c^2 / (overlap_a * overlap_b).
  if (!have_global) global_fit(p, a, b, s, ntop, g);
  const float rot = g.rot, tx = g.tx, ty = g.ty;
  const int nc = g.nc;
  const std::vector<int>& ca = g.ca;
  const std::vector<int>& cb = g.cb;
  const float c = std::cos(rot), sn = std::sin(rot);
  int ova = 0, ovb = 0;
  for (int i = 0; i < a.n; ++i)
    ova += in_hull_fast(b, c * a.x[i] - sn * a.y[i] + tx, sn * a.x[i] + c * a.y[i] + ty, p.global_max_distance_px);
  for (int j = 0; j < b.n; ++j) {
    float dx = b.x[j] - tx, dy = b.y[j] - ty;
    ovb += in_hull_fast(a, c * dx + sn * dy, -sn * dx + c * dy, p.global_max_distance_px);
  }
  const float floor_ov = float(p.pairs_max);
  float glob = float(nc) * float(nc) / (std::max(float(ova), floor_ov) * std::max(float(ovb), floor_ov));
  glob = std::clamp(glob, 0.f, 1.f);
  float score = p.global_weight > 0.f ? std::pow(fused, 1.f - p.global_weight) * std::pow(glob, p.global_weight) : fused;
  // 8. Where the orientation factor applies, the fused score goes through the monotone curve
  //    that sends the fused thresholds onto the minutiae-only ones: one scale for every pair.
  float ori_fused = score;
  if (ori_applied) {
    ori_fused = score * ori_factor;
    score = cfg.orientation_scale(ori_fused);
  }

  if (ex) {
    ex->lss_a = s.ra;
    ex->lss_b = s.rb;
    ex->lss_similarity.assign(s.l0.begin(), s.l0.begin() + nr);
    ex->relaxed.assign(s.l1.begin(), s.l1.begin() + nr);
    ex->top_a = ta;
    ex->top_b = tb;
    ex->top_relaxed = s.tr;
    ex->consistent_a = ca;
    ex->consistent_b = cb;
    ex->rotation_rad = rot;
    ex->tx = tx;
    ex->ty = ty;
    ex->n_pairs = np;
    ex->n_consistent = nc;
    ex->overlap_a = ova;
    ex->overlap_b = ovb;
    ex->lssr_score = lssr;
    ex->global_score = glob;
    ex->orientation_scaled = ori_applied;
    ex->orientation_fused = ori_fused;
    ex->score = score;
  }
  return score;
}

void match_many(const Config& cfg, const Prepared& probe, const Prepared* const* cands, int64_t n, float* out,
                int n_threads) {
  n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, (n + 15) / 16)));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto work = [&]() {
    Scratch s;
    try {
      constexpr int64_t chunk = 32;
      for (;;) {
        int64_t lo = next.fetch_add(chunk);
        if (lo >= n || failed.load()) break;
        int64_t hi = std::min(n, lo + chunk);
        for (int64_t i = lo; i < hi; ++i) out[i] = match(cfg, probe, *cands[i], s);
      }
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  };
  if (n_threads == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < n_threads; ++t) pool.emplace_back(work);
    for (auto& th : pool) th.join();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace biomatch
