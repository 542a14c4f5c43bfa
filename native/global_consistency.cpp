// Global consistency (biomatch's addition): one rigid transform fitted on the LSS-R top pairs,
// refined once on the minutiae it pairs one-to-one; global = n_c^2 / (overlap_a * overlap_b).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "hull.hpp"
#include "mcc_internal.hpp"
#include "stages.hpp"

namespace biomatch::detail {
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

GlobalTerm global_term(const MccParams& p, const Prepared& a, const Prepared& b, const GlobalFit& g) {
  GlobalTerm out;
  const float rot = g.rot, tx = g.tx, ty = g.ty;
  const float c = std::cos(rot), sn = std::sin(rot);
  for (int i = 0; i < a.n; ++i)
    out.overlap_a +=
        in_hull_fast(b, c * a.x[i] - sn * a.y[i] + tx, sn * a.x[i] + c * a.y[i] + ty, p.global_max_distance_px);
  for (int j = 0; j < b.n; ++j) {
    float dx = b.x[j] - tx, dy = b.y[j] - ty;
    out.overlap_b += in_hull_fast(a, c * dx + sn * dy, -sn * dx + c * dy, p.global_max_distance_px);
  }
  const float floor_ov = float(p.pairs_max);
  const float glob = float(g.nc) * float(g.nc) /
                     (std::max(float(out.overlap_a), floor_ov) * std::max(float(out.overlap_b), floor_ov));
  out.score = std::clamp(glob, 0.f, 1.f);
  return out;
}

}  // namespace biomatch::detail
