// Preparation (Section 3): the cylinders of a minutiae set, packed and sorted by direction,
// and the per-template tables the later stages read (pairwise distances and angles, the hull,
// the orientation grid's blocks).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "hull.hpp"
#include "mcc_internal.hpp"

namespace biomatch {

using namespace detail;

namespace {

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
}

// The valid cylinders (Section 3.2), compacted and sorted by direction, with their counts.
void pack_valid_cylinders(const Config& cfg, Prepared& t, const std::vector<uint8_t>& valid,
                          const std::vector<uint64_t>& bits, const std::vector<uint64_t>& mask,
                          const std::vector<uint64_t>& smask) {
  const int n = t.n;
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
  std::vector<uint8_t> valid;
  std::vector<uint64_t> bits, mask, smask;
  compute_cells(cfg, xyaq, n, t.x, t.y, t.theta, t.hull, nullptr, nullptr, valid, &bits, &mask, &smask);
  fill_minutia_tables(t, xyaq);
  pack_valid_cylinders(cfg, t, valid, bits, mask, smask);
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
  std::vector<float> xs, ys, th, hull;
  compute_cells(cfg, xyaq, n, xs, ys, th, hull, &values, &valid_cells, cylinder_valid, nullptr, nullptr, nullptr);
}

}  // namespace biomatch
