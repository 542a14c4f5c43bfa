// Orientation-field agreement (biomatch's addition, evidence beside the minutiae): for pairs
// that went through the elastic stage, when both templates carry a block orientation grid, a
// rigid transform maps B's blocks onto A's; A2 = the mean cos 2(difference) of the overlapping
// valid blocks (reported), and the score's factor is 1 - w + w * R with R the robust agreement:
// each block earns a credit, 1 where the orientations agree, falling linearly in cos 2(difference)
// to 0 at orientation_zero_credit_deg; blocks beyond orientation_conflict_deg are in conflict, and
// the largest 8-connected region of them on A's grid (when at most
// orientation_conflict_max_fraction of the overlap) counts at orientation_conflict_weight instead
// of in full:  with n blocks, m of them in that region and C the credit of the n - m others,
// R = C / (n - m) * (1 - lambda m / n).  orientation_zero_credit_deg = 0: R = max(A2, 0), the
// factor before 2026-12-07 (galleries built then keep their scores).
// Why: the mean A2 reads one compact region of disagreement -- a scar, a crease, a patch of
// skin turned or cut (SOCOFing's central rotation and z-cut), a smudge -- as disagreement of the
// whole print, so an altered finger's mate was pushed under an impostor whose field agrees
// mediocrely everywhere; a mate agrees as a mate around that region.
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

// The number of conflict blocks in the largest 8-connected region of A's cells holding them
// (s.oconf: count per cell, the first n_cells of s.ocells: those cells), by flood fill; every
// count is zero after.
int largest_conflict_region(const Prepared& a, Scratch& s, int n_cells) {
  uint16_t* __restrict conf = s.oconf.data();
  int* __restrict stack = s.ostack.data();  // >= rows * cols entries: each cell enters once
  const int* cells = s.ocells.data();
  const int rows = a.grid_rows, cols = a.grid_cols;
  int best = 0;
  for (int i = 0; i < n_cells; ++i) {
    const int seed = cells[i];
    if (!conf[seed]) continue;  // already in a region
    int size = conf[seed], top = 0;
    conf[seed] = 0;
    stack[top++] = seed;
    while (top > 0) {
      const int c = stack[--top];
      const int r0 = c / cols, q0 = c % cols;
      for (int r = std::max(r0 - 1, 0); r <= std::min(r0 + 1, rows - 1); ++r)
        for (int q = std::max(q0 - 1, 0); q <= std::min(q0 + 1, cols - 1); ++q) {
          const int nb = r * cols + q;
          if (!conf[nb]) continue;
          size += conf[nb];
          conf[nb] = 0;
          stack[top++] = nb;
        }
    }
    best = std::max(best, size);
  }
  return best;
}

// Orientation agreement A2 of B's grid with A's under B ~ R(rot) A + t: each valid block centre c
// of B goes to R^T (c - t) in A's frame, its orientation (image axes) turns by +rot; A2 = the mean
// cos 2(o_A - o_B') over the centres landing on a valid block of A (0 when none), n their number,
// and the robust agreement R with the size of the conflict region it set apart (see the top).
// Two passes: the mapping, element-wise (in vectors of the module's width; IEEE operations without
// contraction give the same bits at any width), then the sum in block order, branch-free (where a
// block lands is unpredictable): blocks off A's print read a cell of (0, 0) and add exact zeros.
// One implementation for every kernel.
void orientation_agreement(const Config& cfg, const Prepared& a, const Prepared& b, float rot, float tx, float ty,
                           Scratch& s, float& agree, int& n, float& robust, int& conflict) {
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
  // Zero credit angle 0 (the mean agreement, below) has no credit ramp: inv0 = 0, not 1 / 0.
  const float c0 = cfg.orientation_credit_cos(), inv0 = c0 < 1.f ? 1.f / (1.f - c0) : 0.f;
  double sum = 0.0, credit = 0.0;  // hundreds of terms near 1: a float sum would lose ~1e-5
  int cnt = 0;
  if (s.oconf.size() < a.grid.size()) {
    s.oconf.assign(a.grid.size(), 0);  // zero between pairs
    s.ostack.resize(a.grid.size());
  }
  if (s.ocells.size() < np) s.ocells.resize(np);
  const float cconf = cfg.params().orientation_zero_credit_deg > 0.f ? cfg.orientation_conflict_cos() : -2.f;
  int* __restrict bad_cells = s.ocells.data();
  int n_bad = 0;
  for (int k = 0; k < b.grid_n; ++k) {
    const int cell = oidx[k], v = grid[cell];
    const float d = da.c[v] * oqc[k] + da.s[v] * oqs[k];
    const int on = v != kGridNone;
    sum += d;
    credit += float(on) * std::min(std::max((d - c0) * inv0, 0.f), 1.f);  // off-print blocks: none
    cnt += on;
    // The conflict blocks' cells, listed branch-free (which blocks conflict is unpredictable).
    bad_cells[n_bad] = cell;
    n_bad += on & (d < cconf);
  }
  // Count them per cell of A; each cell listed once, at the front of the same array.
  uint16_t* __restrict conf = s.oconf.data();
  int n_cells = 0;
  for (int i = 0; i < n_bad; ++i) {
    const int cell = bad_cells[i];
    if (conf[cell]++ == 0) bad_cells[n_cells++] = cell;
  }
  agree = cnt ? static_cast<float>(sum / cnt) : 0.f;
  n = cnt;
  const int m = n_cells ? largest_conflict_region(a, s, n_cells) : 0;  // leaves oconf zero
  const auto& p = cfg.params();
  if (p.orientation_zero_credit_deg <= 0.f) {  // the mean agreement (galleries from before R)
    robust = std::max(agree, 0.f);
    conflict = 0;
  } else if (cnt == 0) {
    robust = 0.f;
    conflict = 0;
  } else if (m > p.orientation_conflict_max_fraction * cnt) {
    robust = static_cast<float>(credit / cnt);
    conflict = 0;
  } else {
    // Conflict blocks earn no credit (zero credit <= conflict angle): C is the whole sum.
    robust = static_cast<float>(credit / (cnt - m) * (1.0 - p.orientation_conflict_weight * double(m) / cnt));
    conflict = m;
  }
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
  orientation_agreement(cfg, a, b, o.rot, o.tx, o.ty, s, o.agreement, o.blocks, o.robust, o.conflict);
  const float ow = cfg.params().orientation_weight;
  o.factor = 1.f - ow + ow * o.robust;
  return o;
}

}  // namespace biomatch::detail
