// Minutia Cylinder-Code matcher (bit variant) with LSS-R consolidation, elastic and global
// consistency and the orientation-field agreement: the public contract.  The parameters are
// the rows of mcc_params.def; the stages of match(), one translation unit each, are listed in
// stages.hpp.
//
// Reference: R. Cappelli, M. Ferrara, D. Maltoni, "Minutia Cylinder-Code: a new
// representation and matching technique for fingerprint recognition", IEEE TPAMI
// 32(12), 2010.  Section numbers in comments refer to that paper.
//
// No Python headers here (see bindings.cpp).  No mutable global state: a Config is
// immutable after construction, a Prepared template is immutable after prepare(),
// and every match call takes its own Scratch, so concurrent calls are safe.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace biomatch {

// All tunables: one field per row of mcc_params.def (the table biomatch.params.MatchParams
// is checked against), with its default.
struct MccParams {
#define BIOMATCH_MCC_PARAM(type, name, ...) type name{__VA_ARGS__};
#include "mcc_params.def"
#undef BIOMATCH_MCC_PARAM
};

// The instruction set a module of the native core is compiled for (one extension module per
// kernel, chosen when biomatch._native loads).  All kernels give bit-identical scores.
enum class Kernel { Portable, Avx2, Avx512 };

// The kernel of this module, and its name ("portable", "avx2", "avx512").
Kernel compiled_kernel();
const char* kernel_name(Kernel k);

// True when this CPU runs the kernel's instructions (what the module's compiler flags assume).
bool cpu_runs(Kernel k);

// A minutiae set with its cylinders, in a y-up working frame.
//
// Cylinders store only the cells whose centre lies inside the disc of radius R
// ("disc cells", packed: bit k * disc + q for angular plane k and disc cell q), and
// are sorted by minutia direction so that the +-delta_theta direction test of the
// local similarity selects contiguous ranges.
struct Prepared {
  int n = 0;                        // number of minutiae
  int words = 0;                    // uint64 words per packed cylinder
  int mask_words = 0;               // uint64 words per packed spatial mask (one plane)
  std::vector<float> x, y, theta;   // y-up frame, theta in [0, 2pi)
  std::vector<float> quality;       // 0..1 as given
  std::vector<float> cos_theta, sin_theta;  // of theta
  std::vector<float> dist;          // n*n: distance from i to j (px)
  std::vector<float> rel, radial;   // n*n: theta_j - theta_i, atan2(j - i) - theta_i, in [0, 2pi)
  // Valid cylinders only (Section 3.2), compacted and sorted by cyl_theta.
  std::vector<int> cyl_index;       // minutia index of each valid cylinder
  std::vector<float> cyl_theta;     // ascending
  std::vector<uint64_t> bits;       // n_valid * words, cell bits (zero outside the mask)
  std::vector<uint64_t> mask;       // n_valid * words, validity mask (spatial mask in every plane)
  std::vector<uint64_t> smask;      // n_valid * mask_words, spatial validity mask
  // Per valid cylinder: whether its spatial mask covers the whole disc, and its packed counts
  // |bits| << 16 | |smask| << 48, which are those of the cylinder against any full-mask
  // cylinder (see mcc_scan.inc).
  std::vector<uint8_t> cyl_full;
  std::vector<uint64_t> cyl_ones;
  std::vector<float> hull;          // convex hull (x0,y0,x1,y1,...), y-up frame
  std::array<float, 4> bbox{};      // x0, y0, x1, y1 of the minutiae
  std::vector<float> hull_lines;    // per hull edge: outward unit normal (nx, ny), offset
  int npad = 0;                     // n rounded up to a multiple of 16
  std::vector<float> soa;           // x, y, cos_theta, sin_theta, each padded to npad (far away)
  // Block orientation grid (kOrientationBlockPx blocks, image axes); 0 x 0 when absent.
  int grid_rows = 0, grid_cols = 0;
  std::vector<uint8_t> grid;            // rows * cols + 1: degrees 0..179, or 180: no print (the extra cell)
  std::vector<float> grid_px, grid_py;  // per valid block: centre (y-up frame), padded to a multiple of 16
  std::vector<float> grid_pc, grid_ps;  // ... and cos, sin of twice its orientation
  int grid_n = 0;                       // valid blocks
  bool has_grid() const { return grid_rows > 0 && grid_cols > 0; }
};

// Side of one orientation-grid block, px at 500 dpi (biomatch.template.ORIENTATION_BLOCK_PX).
constexpr int kOrientationBlockPx = 16;
constexpr uint8_t kNoPrint = 255;

// Immutable per-parameter tables.
class Config {
 public:
  explicit Config(const MccParams& p);
  const MccParams& params() const { return p_; }
  // Unique per constructed Config (copies share it, and their parameters): the key of caches
  // built from the parameters, such as prepare()'s per-thread cylinder builder.
  uint64_t id() const { return id_; }
  Kernel kernel() const { return compiled_kernel(); }
  int cells() const { return p_.spatial_cells * p_.spatial_cells * p_.angular_cells; }
  int words() const { return words_; }            // packed cylinder words
  int mask_words() const { return mask_words_; }  // packed spatial mask words
  int full_words() const { return (cells() + 63) / 64; }
  int disc_cells() const { return disc_cells_; }  // disc cells x Nd
  int disc_index(int q) const { return disc_index_[q]; }  // packed index of spatial cell q, or -1
  int min_common() const { return min_common_; }
  // Inline: called per pair of relaxation pairs, from another translation unit.
  float z_dist(float d) const {
    const int i = static_cast<int>(d * lut_dist_scale_);
    return lut_dist_[std::min(i, static_cast<int>(lut_dist_.size()) - 1)];
  }
  // z_dist(d) < 1e-4, without the table look-up.
  bool z_dist_negligible(float d) const { return d * lut_dist_scale_ >= static_cast<float>(dist_cutoff_); }
  // z_dist_negligible(d) is d * dist_scale() >= dist_cutoff(), for vector code.
  float dist_scale() const { return lut_dist_scale_; }
  float dist_cutoff() const { return static_cast<float>(dist_cutoff_); }
  // The tables behind z_dist and z_angle (lut_size() entries each), for vector code:
  // z_dist(d) = lut_dist()[min(int(d * dist_scale()), lut_size() - 1)], z_angle alike.
  const float* lut_dist() const { return lut_dist_.data(); }
  const float* lut_angle() const { return lut_angle_.data(); }
  int lut_size() const { return static_cast<int>(lut_dist_.size()); }
  float angle_scale() const { return lut_angle_scale_; }
  float z_angle(float a) const {
    const int i = static_cast<int>(a * lut_angle_scale_);
    return lut_angle_[std::min(i, static_cast<int>(lut_angle_.size()) - 1)];
  }
  // n_P for min(nA, nB) = nmin (lssr_top_pairs), tabulated: the same expression, one exp() fewer per match.
  int pairs_for(int nmin) const;
  // cos(elastic_angle_deg) and cos(elastic_cluster_deg), computed once.
  float elastic_cos_max() const { return elastic_cos_max_; }
  float elastic_cluster_cos() const { return elastic_cluster_cos_; }
  // cos 2(orientation_zero_credit_deg) and cos 2(orientation_conflict_deg), computed once.
  float orientation_credit_cos() const { return orientation_credit_cos_; }
  float orientation_conflict_cos() const { return orientation_conflict_cos_; }
  // The orientation-score mapping (MccParams::orientation_scale_from/to) of a fused score s:
  // monotone non-decreasing, exact at the curve's points, clamped to [0, 1].
  float orientation_scale(float s) const;
  // The reliability-score mapping (MccParams::reliability_scale_from/to), alike.
  float reliability_scale(float s) const;

 private:
  MccParams p_;
  uint64_t id_;
  int words_, mask_words_, disc_cells_, min_common_;
  std::vector<int> disc_index_;
  std::vector<float> lut_dist_, lut_angle_;
  float lut_dist_scale_, lut_angle_scale_;
  int dist_cutoff_;
  std::vector<int> pairs_table_;
  float elastic_cos_max_, elastic_cluster_cos_;
  float orientation_credit_cos_, orientation_conflict_cos_;
};

// xyaq: n rows of (x, y, angle rad CCW as displayed with y down, quality 0..1).  grid: rows x cols
// orientation degrees 0..179 (image axes) or kNoPrint, row-major, or nullptr (rows = cols = 0).
Prepared prepare(const Config& cfg, const float* xyaq, int n, const uint8_t* grid = nullptr, int rows = 0,
                 int cols = 0);

// Float cell values (n, Nd, Ns, Ns) and cell validity (n, Ns, Ns) before
// thresholding, and the per-minutia cylinder validity; for tests and explain().
void cylinder_values(const Config& cfg, const float* xyaq, int n, std::vector<float>& values,
                     std::vector<uint8_t>& valid_cells, std::vector<uint8_t>& cylinder_valid);

// Per-thread working memory of match(); reused between calls (no allocation once warm).
struct Scratch {
  std::vector<uint32_t> code;       // pair (minutia_a << 16 | minutia_b)
  std::vector<uint64_t> counts;     // packed popcounts per pair
  std::vector<float> sim;           // local similarity per pair
  std::vector<uint8_t> bins;        // its LSS histogram bin (see select_lss_pairs)
  std::vector<int> bsplit;          // scan: B's cylinders split by full spatial mask (see mcc_scan.inc)
  std::vector<uint64_t> keys;       // selected pairs: similarity bits << 32 | ~code
  std::vector<uint64_t> keys2;      // relaxed pairs: efficiency bits << 32 | ~t
  std::vector<int> ra, rb, order, ta, tb, near;
  std::vector<float> near_d;         // relaxation (AVX-512): d1 of each near pair
  std::vector<float> l0, l1, l2, rho, tw, tr;
  std::vector<float> rw;             // LSS-R: reliability of each relaxation pair
  std::vector<float> cand;
  std::vector<uint8_t> used_a, used_b;
  std::vector<int> ea, eb;           // elastic pairs of the current anchor
  std::vector<int> epart;            // elastic: 1 + partner in B of each minutia of A (best anchor)
  std::vector<float> erel;           // elastic: relative error per minutia of B (padded)
  std::vector<float> etried;         // elastic: anchors tried (ax, ay, bx, by, cos, sin of rotation)
  std::vector<float> erow;           // elastic (AVX-512): per minutia of A, X, Y, 1 / tol^2, cos, sin
  std::vector<int> eidx;             // elastic (AVX-512): the minutiae of A within reach of B
  std::vector<uint64_t> ekeys;       // elastic candidates: error bits << 32 | a << 16 | b
  std::vector<int> oidx;             // orientation: cell of A each block of B lands on (rows * cols: none)
  std::vector<float> oqc, oqs;       // orientation: B's doubled-angle vectors turned into A's frame
  std::vector<uint16_t> oconf;       // orientation: conflict blocks per cell of A (0 between pairs)
  std::vector<int> ocells, ostack;   // orientation: cells holding conflict blocks; flood-fill stack
};

// Cylinders in the unpacked layout (bit k * Ns * Ns + i * Ns + j), in minutia order;
// for tests and inspection.
void unpack_cylinders(const Config& cfg, const Prepared& t, std::vector<int>& index,
                      std::vector<uint64_t>& bits, std::vector<uint64_t>& mask);

struct Explanation {
  std::vector<int> lss_a, lss_b;          // the n_R pairs that entered relaxation
  std::vector<float> lss_similarity;      // their local similarity (lambda^0)
  std::vector<float> relaxed;             // lambda^n_rel
  std::vector<int> top_a, top_b;          // the n_P pairs by efficiency
  std::vector<float> top_relaxed;
  std::vector<int> consistent_a, consistent_b;
  float rotation_rad = 0, tx = 0, ty = 0; // B ~ R(rot) A + t, y-up frame
  int n_pairs = 0, n_consistent = 0, overlap_a = 0, overlap_b = 0;
  float lssr_score = 0, global_score = 0, score = 0;
  std::vector<int> elastic_a, elastic_b;  // elastic-consistent pairs of the best anchor
  int elastic_anchor = -1, n_elastic = 0, elastic_overlap_a = 0, elastic_overlap_b = 0;
  float elastic_score = 0;
  int valid_cylinders_a = 0, valid_cylinders_b = 0;
  bool orientation_used = false;          // A2 computed (both grids, elastic stage, score > 0)
  float orientation_agreement = 0;        // A2
  int orientation_blocks = 0;             // overlapping valid blocks
  float orientation_robust = 0;           // R (the factor's agreement)
  int orientation_conflict_blocks = 0;    // blocks of the region counted at the conflict weight
  float orientation_rot = 0, orientation_tx = 0, orientation_ty = 0;  // its alignment, B ~ R A + t
  float orientation_factor = 1;           // 1 - w + w * R
  bool orientation_scaled = false;        // the factor and the mapping applied (w > 0)
  float orientation_fused = 0;            // score * factor, before orientation_scale()
};

float match(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s,
            Explanation* ex = nullptr);

// Scores of one probe against many candidates, on n_threads std::threads.
void match_many(const Config& cfg, const Prepared& probe, const Prepared* const* cands,
                int64_t n, float* out, int n_threads);

// Local similarity between two cylinders (bit variant, Section 4.1); exposed for tests.
float cylinder_similarity(const Config& cfg, const Prepared& a, int ia, const Prepared& b, int ib);


// Code stage (code_sums.cpp): adds, for every row i of one position not marked in ``removed``
// (packed bits, np.packbits order, row i at bit removed_offset + i; null: none), the weighted
// agreement scale * (total - 2 sum_l 2^l popcount((codes[i] ^ probe) & planes[l])) to
// sums[keys[i]] (from 0 where seen[keys[i]] was 0) and sets seen[keys[i]]; keys outside
// [0, n_keys) are skipped.
void code_sums(const uint64_t* codes, int64_t n_rows, int n_words, const int32_t* keys,
               const uint8_t* removed, int64_t removed_offset, const uint64_t* probe,
               const uint64_t* planes, int n_planes, int64_t total, float scale, float* sums,
               uint8_t* seen, int64_t n_keys);

// One position's part of a probe for code_sums_blocked: code_sums' arguments but the sums.
struct CodePass {
  const uint64_t* codes;
  int64_t n_rows;
  int n_words;
  const int32_t* keys;
  const uint8_t* removed;
  int64_t removed_offset;
  const uint64_t* probe;
  const uint64_t* planes;
  int n_planes;
  int64_t total;
  float scale;
};

// code_sums of every pass in order, into the same sums, with the same bits as calling it pass after
// pass.  With block_keys > 0 every pass's keys must be non-decreasing: the persons are then taken
// block_keys at a time, every pass over the rows of the block's persons before the next block,
// so that the block's sums and flags stay in cache while the codes stream (each person still
// gets its passes in order).  block_keys <= 0: pass after pass.
void code_sums_blocked(const CodePass* passes, int n_passes, float* sums, uint8_t* seen, int64_t n_keys,
                       int64_t block_keys);

}  // namespace biomatch
