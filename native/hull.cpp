// Convex hull of the minutiae and its edge lines (see hull.hpp).
#include "hull.hpp"

#include <cmath>
#include <numeric>

namespace biomatch::detail {

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

}  // namespace biomatch::detail
