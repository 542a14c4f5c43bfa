// The minutiae convex hull, enlarged by a margin: the valid cells of a cylinder (Section 3.2)
// and the overlap counts of the elastic and global consistency terms.  Hull points are
// (x0, y0, x1, y1, ...) in the y-up working frame, counter-clockwise.
#pragma once

#include <algorithm>
#include <vector>

#include "mcc.hpp"

namespace biomatch::detail {

// Convex hull (Andrew's monotone chain), counter-clockwise, no repeated point.
std::vector<float> convex_hull(const std::vector<float>& x, const std::vector<float>& y);

// Outward unit normals and offsets of the hull edges (nx, ny, off per edge): the signed
// distance of p to edge e's line is nx px + ny py - off, > 0 outside.  Empty for m < 3.
std::vector<float> hull_lines(const std::vector<float>& hull);

inline float seg_dist2(float px, float py, float ax, float ay, float bx, float by) {
  float dx = bx - ax, dy = by - ay;
  float l2 = dx * dx + dy * dy;
  float t = l2 > 0 ? std::clamp(((px - ax) * dx + (py - ay) * dy) / l2, 0.f, 1.f) : 0.f;
  float ex = ax + t * dx - px, ey = ay + t * dy - py;
  return ex * ex + ey * ey;
}

// True when (px, py) lies inside the hull or within `margin` of it.  Out of line on purpose:
// inlined into compute_cells' cell loop it costs registers there (prepare ~15% slower).
bool in_hull(const std::vector<float>& hull, float px, float py, float margin);

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

}  // namespace biomatch::detail
