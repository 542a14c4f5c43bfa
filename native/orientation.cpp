// Orientation-field agreement (biomatch's addition, evidence beside the minutiae): for pairs
// that went through the elastic stage, when both templates carry a block orientation grid, a
// rigid transform maps B's blocks onto A's; A2 = the mean cos 2(difference) of the overlapping
// valid blocks, and the score's factor is 1 - w + w * max(A2, 0).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "mcc_internal.hpp"
#include "stages.hpp"

namespace biomatch::detail {
namespace {

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
// Two passes: the mapping, element-wise (in vectors of the module's width; IEEE operations without
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
  // kFloatLanes blocks at a time (GCC/Clang vector extensions: the compiler does not vectorise
  // the scalar form of this loop).  Off-print blocks take their cell from (0, 0) before it is
  // replaced (a float beyond int range has no defined conversion).
  typedef float fv __attribute__((vector_size(4 * kFloatLanes)));
  typedef int32_t iv __attribute__((vector_size(4 * kFloatLanes)));
  const fv zero = {}, vw = zero + w, vh = zero + h;
  for (size_t k = 0; k < np; k += kFloatLanes) {  // np: a multiple of 16
    fv x, y, c, sn;
    std::memcpy(&x, bx + k, sizeof x);
    std::memcpy(&y, by + k, sizeof y);
    std::memcpy(&c, bc + k, sizeof c);
    std::memcpy(&sn, bs + k, sizeof sn);
    const fv dx = x - tx, dy = y - ty;
    const fv px = cr * dx + sr * dy, py = sr * dx - cr * dy;  // A's frame, image axes (y down)
    const iv in = (px >= zero) & (px < vw) & (py >= zero) & (py < vh);
    const fv fx = (fv)((iv)(px * inv) & in), fy = (fv)((iv)(py * inv) & in);
    const iv idx = __builtin_convertvector(fy, iv) * cols + __builtin_convertvector(fx, iv);
    const iv cell = (idx & in) | (outside & ~in);
    const fv qc = c2 * c - s2 * sn, qs = s2 * c + c2 * sn;
    std::memcpy(oidx + k, &cell, sizeof cell);
    std::memcpy(oqc + k, &qc, sizeof qc);
    std::memcpy(oqs + k, &qs, sizeof qs);
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

OrientationTerm orientation_term(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int ntop,
                                 const ElasticTerm& e, GlobalFit& g, bool& have_global) {
  OrientationTerm o;
  // The best anchor's pairs (>= 3) fix a rigid transform by least squares, else the global one.
  if (e.n >= 3 && e.anchor >= 0) {
    refit_pairs(a, b, s.epart, o.rot, o.tx, o.ty);
  } else {
    global_fit(cfg.params(), a, b, s, ntop, g);
    have_global = true;
    o.rot = g.rot;
    o.tx = g.tx;
    o.ty = g.ty;
  }
  orientation_agreement(a, b, o.rot, o.tx, o.ty, s, o.agreement, o.blocks);
  const float ow = cfg.params().orientation_weight;
  o.factor = 1.f - ow + ow * std::max(o.agreement, 0.f);
  return o;
}

}  // namespace biomatch::detail
