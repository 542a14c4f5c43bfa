// The stages of match() (match.cpp), one translation unit each, in the order match() runs them:
//
//   local_similarity.cpp   1. scan_pairs: local similarity of every direction-compatible pair
//                          2. select_lss_pairs: the n_R most similar pairs (LSS)
//   relaxation.cpp         3. relax_pairs: LSS-R relaxation of those pairs
//                          4. lssr_top_pairs: the n_P most efficient pairs, the LSS-R score
//   elastic.cpp            5. elastic_term: elastic consistency about the best anchor pair
//   orientation.cpp        6. orientation_term: agreement of the block orientation fields
//   global_consistency.cpp 7. global_fit, global_term: one rigid transform, its consistent pairs
//
// Stages exchange data through the caller's Scratch (documented in mcc.hpp) and the small
// result structs below.  Comments cite sections of Cappelli et al. 2010.
#pragma once

#include <vector>

#include "mcc.hpp"

namespace biomatch::detail {

// Minutia reliability from a stored quality (0..1): 0 is "not reported" in the interchange
// formats, so it counts as fully reliable (the unweighted score).
inline float reliability_of(float q) { return q > 0.f ? q : 1.f; }

// Whether a template reports minutia qualities: not all the same (all 0 is "not reported" in
// the interchange formats; one value for every minutia, e.g. 100 from Template.from_arrays,
// tells one minutia from another no more than none).
inline bool has_qualities(const Prepared& t) {
  for (int i = 1; i < t.n; ++i)
    if (t.quality[i] != t.quality[0]) return true;
  return false;
}

// 1. Returns the number of pairs; s.sim, s.bins and s.code describe them.
int scan_pairs(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s);

// 2. From the `total` scanned pairs: n_R = min(nmin, pairs with similarity > 0) pairs in s.ra,
//    s.rb, their similarity lambda^0 in s.l0 (padded with zeros to a multiple of 16).  Returns
//    n_R, 0 when no pair has any similarity.
int select_lss_pairs(Scratch& s, int total, int nmin);

// 3. lambda^n_rel of the n_R pairs of step 2 in s.l1.
void relax_pairs(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int nr);

// 4. The min(np, nr) pairs of highest efficiency lambda^n_rel / lambda^0, in that order: s.ta,
//    s.tb (minutiae), s.tw (max(lambda^n_rel, 0), fit weights), s.tr (lambda^n_rel).  Returns
//    the LSS-R score, their lambda^n_rel sum / np clamped to [0, 1]; when `reliable` (both
//    templates report minutia qualities: has_qualities) and lssr_reliability_weight > 0, the
//    reliability-weighted sum of the min(np, nr) pairs of highest reliability x efficiency
//    instead (the top pairs above are unchanged).
float lssr_top_pairs(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int nr, int np,
                     bool reliable);

// 5. The elastic stage's outcome; anchor < 0 when no anchor paired any minutia.
struct ElasticTerm {
  int anchor = -1;              // index into the top pairs
  int n = 0;                    // elastic-consistent pairs of the best anchor
  int overlap_a = 0, overlap_b = 0;
  float cos = 1.f, sin = 0.f;   // of the best alignment's rotation
  float score = 0.f;            // n^2 / (overlap_a * overlap_b), floor pairs_max, in [0, 1]
                                // (overlaps counted by reliability: elastic_reliability_weight)
};

// 5. Each of the first elastic_anchors top pairs (ntop of them) anchors an alignment; the best
//    one's pairs, 1 + partner in B per minutia of A, are left in s.epart.  `reliable`: the
//    overlaps are counted by minutia reliability (elastic_reliability_weight).
ElasticTerm elastic_term(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int ntop,
                         bool reliable);

// 5. The best anchor's pairs in greedy order (for explain()), in ex.
void explain_elastic(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, const ElasticTerm& e,
                     Explanation& ex);

// 7. The global rigid transform B ~ R(rot) A + t: fitted on the top pairs, refined once on the
//    minutiae it pairs one-to-one (ca, cb: nc pairs).
struct GlobalFit {
  float rot = 0, tx = 0, ty = 0;
  int nc = 0;
  std::vector<int> ca, cb;
};

void global_fit(const MccParams& p, const Prepared& a, const Prepared& b, Scratch& s, int ntop, GlobalFit& g);

struct GlobalTerm {
  int overlap_a = 0, overlap_b = 0;
  float score = 0.f;  // nc^2 / (overlap_a * overlap_b), floor pairs_max, in [0, 1]
};

GlobalTerm global_term(const MccParams& p, const Prepared& a, const Prepared& b, const GlobalFit& g);

// 6. The orientation-field agreement A2 under the best anchor's elastic pairs (>= 3) refitted
//    rigidly, else under the global transform (then computed into g, and have_global set).
struct OrientationTerm {
  float agreement = 0.f;  // A2
  int blocks = 0;         // overlapping valid blocks
  float robust = 0.f;     // R, in [0, 1]
  int conflict = 0;       // blocks of the largest conflict region, counted at the conflict weight
  float rot = 0.f, tx = 0.f, ty = 0.f;
  float factor = 1.f;     // 1 - w + w * R
};

OrientationTerm orientation_term(const Config& cfg, const Prepared& a, const Prepared& b, Scratch& s, int ntop,
                                 const ElasticTerm& e, GlobalFit& g, bool& have_global);

}  // namespace biomatch::detail
