// Minutia Cylinder-Code (bit variant) + LSS-R + global rigid consistency.
// See mcc.hpp for the contract; comments cite sections of Cappelli et al. 2010.
#include "mcc.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <numeric>
#include <stdexcept>
#include <thread>

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
#include <immintrin.h>
#define BIOMATCH_AVX512 1
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
  float best = 1e30f;
  for (int i = 0; i < m; ++i) {
    int j = (i + 1) % m;
    float ax = hull[2 * i], ay = hull[2 * i + 1], bx = hull[2 * j], by = hull[2 * j + 1];
    if ((bx - ax) * (py - ay) - (by - ay) * (px - ax) < 0) inside = false;
    best = std::min(best, seg_dist2(px, py, ax, ay, bx, by));
  }
  return inside || best <= margin * margin;
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
}

void compute_cells(const Config& cfg, const float* xyaq, int n, std::vector<float>& xs,
                   std::vector<float>& ys, std::vector<float>& th, std::vector<float>& hull,
                   std::vector<float>* values, std::vector<uint8_t>* valid_cells,
                   std::vector<uint8_t>& cyl_valid, std::vector<uint64_t>* bits,
                   std::vector<uint64_t>* mask) {
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
    if (bits) {
      uint64_t* b = bits->data() + static_cast<size_t>(m) * words;
      uint64_t* mk = mask->data() + static_cast<size_t>(m) * words;
      for (int k = 0; k < nd; ++k)
        for (int q = 0; q < plane; ++q) {
          if (!vc[q]) continue;
          int bit = k * plane + q;
          mk[bit >> 6] |= uint64_t(1) << (bit & 63);
          if (acc[k * plane + q] > p.cell_threshold) b[bit >> 6] |= uint64_t(1) << (bit & 63);
        }
    }
  }
}

// Popcounts of (ma&mb), (a^b), a=(ca&mb), b=(cb&ma) over one cylinder pair.
struct Counts {
  int common, diff, na, nb;
};

inline Counts popcounts(const uint64_t* ca, const uint64_t* ma, const uint64_t* cb, const uint64_t* mb,
                        int words) {
#ifdef BIOMATCH_AVX512
  // Four counts packed in 16-bit fields of each 64-bit lane: one reduction instead of four.
  __m512i acc = _mm512_setzero_si512();
  for (int w = 0; w < words; w += 8) {
    __m512i vma = _mm512_loadu_si512(ma + w), vmb = _mm512_loadu_si512(mb + w);
    __m512i vca = _mm512_loadu_si512(ca + w), vcb = _mm512_loadu_si512(cb + w);
    __m512i a = _mm512_and_si512(vca, vmb), b = _mm512_and_si512(vcb, vma);
    __m512i m = _mm512_and_si512(vma, vmb), x = _mm512_xor_si512(a, b);
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(m));
    acc = _mm512_add_epi64(acc, _mm512_slli_epi64(_mm512_popcnt_epi64(x), 16));
    acc = _mm512_add_epi64(acc, _mm512_slli_epi64(_mm512_popcnt_epi64(a), 32));
    acc = _mm512_add_epi64(acc, _mm512_slli_epi64(_mm512_popcnt_epi64(b), 48));
  }
  uint64_t t = static_cast<uint64_t>(_mm512_reduce_add_epi64(acc));
  return {int(t & 0xffff), int((t >> 16) & 0xffff), int((t >> 32) & 0xffff), int(t >> 48)};
#else
  int c = 0, d = 0, na = 0, nb = 0;
  for (int w = 0; w < words; ++w) {
    uint64_t a = ca[w] & mb[w], b = cb[w] & ma[w];
    c += __builtin_popcountll(ma[w] & mb[w]);
    d += __builtin_popcountll(a ^ b);
    na += __builtin_popcountll(a);
    nb += __builtin_popcountll(b);
  }
  return {c, d, na, nb};
#endif
}

inline float similarity_from(const Counts& k, int min_common) {
  if (k.common < min_common) return 0.f;
  float den = std::sqrt(float(k.na)) + std::sqrt(float(k.nb));
  if (den <= 0.f) return 0.f;
  return 1.f - std::sqrt(float(k.diff)) / den;
}

}  // namespace

Config::Config(const MccParams& p) : p_(p) {
  check_params(p);
  int bits = cells();
  words_ = ((bits + 511) / 512) * 8;
  Geometry g(p);
  int disc = 0;
  for (int i = 0; i < p.spatial_cells; ++i)
    for (int j = 0; j < p.spatial_cells; ++j)
      disc += g.centre(i) * g.centre(i) + g.centre(j) * g.centre(j) <= p.radius_px * p.radius_px;
  disc_cells_ = disc * p.angular_cells;
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
}

float Config::z_dist(float d) const {
  int i = static_cast<int>(d * lut_dist_scale_);
  return lut_dist_[std::min(i, static_cast<int>(lut_dist_.size()) - 1)];
}

float Config::z_angle(float a) const {
  int i = static_cast<int>(a * lut_angle_scale_);
  return lut_angle_[std::min(i, static_cast<int>(lut_angle_.size()) - 1)];
}

Prepared prepare(const Config& cfg, const float* xyaq, int n) {
  Prepared t;
  t.n = n;
  t.words = cfg.words();
  std::vector<uint8_t> valid;
  std::vector<uint64_t> bits, mask;
  compute_cells(cfg, xyaq, n, t.x, t.y, t.theta, t.hull, nullptr, nullptr, valid, &bits, &mask);
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
  for (int i = 0; i < n; ++i) {
    if (!valid[i]) continue;
    t.cyl_index.push_back(i);
    t.cyl_theta.push_back(t.theta[i]);
    t.bits.insert(t.bits.end(), bits.begin() + size_t(i) * t.words, bits.begin() + size_t(i + 1) * t.words);
    t.mask.insert(t.mask.end(), mask.begin() + size_t(i) * t.words, mask.begin() + size_t(i + 1) * t.words);
  }
  return t;
}

void cylinder_values(const Config& cfg, const float* xyaq, int n, std::vector<float>& values,
                     std::vector<uint8_t>& valid_cells, std::vector<uint8_t>& cylinder_valid) {
  std::vector<float> xs, ys, th, hull;
  compute_cells(cfg, xyaq, n, xs, ys, th, hull, &values, &valid_cells, cylinder_valid, nullptr, nullptr);
}

float cylinder_similarity(const Config& cfg, const Prepared& a, int ia, const Prepared& b, int ib) {
  auto find = [](const Prepared& t, int i) {
    auto it = std::find(t.cyl_index.begin(), t.cyl_index.end(), i);
    return it == t.cyl_index.end() ? -1 : static_cast<int>(it - t.cyl_index.begin());
  };
  int ca = find(a, ia), cb = find(b, ib);
  if (ca < 0 || cb < 0) return 0.f;
  const MccParams& p = cfg.params();
  if (std::fabs(wrap_pi(a.cyl_theta[ca] - b.cyl_theta[cb])) > p.max_angle_diff_deg * kDeg) return 0.f;
  const int w = cfg.words();
  Counts k = popcounts(&a.bits[size_t(ca) * w], &a.mask[size_t(ca) * w], &b.bits[size_t(cb) * w],
                       &b.mask[size_t(cb) * w], w);
  int min_common = static_cast<int>(std::ceil(p.min_matchable_cells_fraction * cfg.disc_cells()));
  return similarity_from(k, min_common);
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

}  // namespace

float match(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, Explanation* ex) {
  const MccParams& p = cfg.params();
  if (ex) {
    ex->valid_cylinders_a = static_cast<int>(a.cyl_index.size());
    ex->valid_cylinders_b = static_cast<int>(b.cyl_index.size());
  }
  if (a.n < p.min_minutiae || b.n < p.min_minutiae) return 0.f;
  const int va = static_cast<int>(a.cyl_index.size()), vb = static_cast<int>(b.cyl_index.size());
  const int w = a.words;
  if (w != b.words || w != cfg.words()) throw std::invalid_argument("templates prepared with other parameters");
  const float amax = p.max_angle_diff_deg * kDeg;
  const int min_common = static_cast<int>(std::ceil(p.min_matchable_cells_fraction * cfg.disc_cells()));

  // 1. Local similarities of all valid cylinder pairs (Section 4.1), kept when > 0.
  s.gamma.clear();
  s.pr.clear();
  s.pc.clear();
  for (int i = 0; i < va; ++i) {
    const uint64_t* ca = &a.bits[size_t(i) * w];
    const uint64_t* ma = &a.mask[size_t(i) * w];
    const float ti = a.cyl_theta[i];
    for (int j = 0; j < vb; ++j) {
      if (abs_angle_diff(ti, b.cyl_theta[j]) > amax) continue;
      Counts k = popcounts(ca, ma, &b.bits[size_t(j) * w], &b.mask[size_t(j) * w], w);
      float g = similarity_from(k, min_common);
      if (g <= 0.f) continue;
      s.gamma.push_back(g);
      s.pr.push_back(a.cyl_index[i]);
      s.pc.push_back(b.cyl_index[j]);
    }
  }
  const int nmin = std::min(a.n, b.n);
  const int np = p.pairs_min +
                 static_cast<int>(std::lround(sigmoid(float(nmin), p.pairs_mu, p.pairs_tau) * (p.pairs_max - p.pairs_min)));
  const int total = static_cast<int>(s.gamma.size());
  if (total == 0) return 0.f;

  // 2. LSS: the n_R = min(nA, nB) most similar pairs (Section 4.2); ties by index for determinism.
  const int nr = std::min(nmin, total);
  s.order.resize(total);
  std::iota(s.order.begin(), s.order.end(), 0);
  auto by_gamma = [&](int u, int v) { return s.gamma[u] > s.gamma[v] || (s.gamma[u] == s.gamma[v] && u < v); };
  std::partial_sort(s.order.begin(), s.order.begin() + nr, s.order.end(), by_gamma);
  std::vector<int> ra(nr), rb(nr);
  s.l0.resize(nr);
  for (int t = 0; t < nr; ++t) {
    ra[t] = s.pr[s.order[t]];
    rb[t] = s.pc[s.order[t]];
    s.l0[t] = s.gamma[s.order[t]];
  }

  // 3. Relaxation (Section 4.3): compatibility rho of every two pairs, then n_rel iterations.
  s.rho.assign(size_t(nr) * nr, 0.f);
  for (int t = 0; t < nr; ++t) {
    const int at = ra[t], bt = rb[t];
    for (int k = t + 1; k < nr; ++k) {
      const int ak = ra[k], bk = rb[k];
      float d1 = std::fabs(a.dist[at * a.n + ak] - b.dist[bt * b.n + bk]);
      float z = cfg.z_dist(d1);
      if (z < 1e-4f) continue;
      float d2 = abs_angle_diff(a.rel[at * a.n + ak], b.rel[bt * b.n + bk]);
      float d3 = abs_angle_diff(a.radial[at * a.n + ak], b.radial[bt * b.n + bk]);
      float r = z * cfg.z_angle(d2) * cfg.z_angle(d3);
      s.rho[size_t(t) * nr + k] = r;
      s.rho[size_t(k) * nr + t] = r;
    }
  }
  s.l1 = s.l0;
  s.l2.resize(nr);
  const float wr = p.relax_weight;
  const float norm = nr > 1 ? (1.f - wr) / float(nr - 1) : 0.f;
  for (int it = 0; it < p.relax_iterations; ++it) {
    for (int t = 0; t < nr; ++t) {
      const float* row = &s.rho[size_t(t) * nr];
      float acc = 0.f;
      for (int k = 0; k < nr; ++k) acc += row[k] * s.l1[k];
      s.l2[t] = wr * s.l1[t] + norm * acc;
    }
    std::swap(s.l1, s.l2);
  }
  // 4. The n_P pairs of highest efficiency lambda^n_rel / lambda^0; score = their mean lambda^n_rel.
  s.eff.resize(nr);
  for (int t = 0; t < nr; ++t) s.eff[t] = s.l1[t] / s.l0[t];
  const int ntop = std::min(np, nr);
  s.order.resize(nr);
  std::iota(s.order.begin(), s.order.end(), 0);
  std::partial_sort(s.order.begin(), s.order.begin() + ntop, s.order.end(),
                    [&](int u, int v) { return s.eff[u] > s.eff[v] || (s.eff[u] == s.eff[v] && u < v); });
  float sum = 0.f;
  std::vector<int> ta(ntop), tb(ntop);
  std::vector<float> tw(ntop);
  for (int q = 0; q < ntop; ++q) {
    int t = s.order[q];
    sum += s.l1[t];
    ta[q] = ra[t];
    tb[q] = rb[t];
    tw[q] = std::max(s.l1[t], 0.f);
  }
  const float lssr = std::clamp(sum / float(np), 0.f, 1.f);
  if (p.global_weight <= 0.f && ex == nullptr) return lssr;

  // 5. Global consistency: one rigid transform from the LSS-R pairs, refined once on the
  //    minutiae it pairs; score = n_c^2 / (overlap_a * overlap_b).
  float rot = 0, tx = 0, ty = 0;
  fit_rigid(a, b, ta.data(), tb.data(), tw.data(), ntop, rot, tx, ty);
  std::vector<int> ca, cb;
  int nc = count_consistent(p, a, b, rot, tx, ty, s, &ca, &cb);
  if (nc >= 3) {
    std::vector<float> ones(nc, 1.f);
    float r2 = rot, x2 = tx, y2 = ty;
    fit_rigid(a, b, ca.data(), cb.data(), ones.data(), nc, r2, x2, y2);
    std::vector<int> ca2, cb2;
    int nc2 = count_consistent(p, a, b, r2, x2, y2, s, &ca2, &cb2);
    if (nc2 > nc) {
      nc = nc2; rot = r2; tx = x2; ty = y2;
      ca.swap(ca2); cb.swap(cb2);
    }
  }
  const float c = std::cos(rot), sn = std::sin(rot);
  int ova = 0, ovb = 0;
  for (int i = 0; i < a.n; ++i)
    ova += in_hull(b.hull, c * a.x[i] - sn * a.y[i] + tx, sn * a.x[i] + c * a.y[i] + ty, p.global_max_distance_px);
  for (int j = 0; j < b.n; ++j) {
    float dx = b.x[j] - tx, dy = b.y[j] - ty;
    ovb += in_hull(a.hull, c * dx + sn * dy, -sn * dx + c * dy, p.global_max_distance_px);
  }
  const float floor_ov = float(p.pairs_max);
  float glob = float(nc) * float(nc) / (std::max(float(ova), floor_ov) * std::max(float(ovb), floor_ov));
  glob = std::clamp(glob, 0.f, 1.f);
  const float score = std::pow(lssr, 1.f - p.global_weight) * std::pow(glob, p.global_weight);

  if (ex) {
    ex->lss_a = ra;
    ex->lss_b = rb;
    ex->lss_similarity = s.l0;
    ex->relaxed.assign(s.l1.begin(), s.l1.end());
    ex->top_a = ta;
    ex->top_b = tb;
    ex->top_relaxed.clear();
    for (int q = 0; q < ntop; ++q) ex->top_relaxed.push_back(s.l1[s.order[q]]);
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
