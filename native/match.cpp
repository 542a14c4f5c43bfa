// match(): the stages of stages.hpp in order, and the score they fuse; match_many() on threads.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <thread>

#include "stages.hpp"

namespace biomatch {

using namespace detail;

namespace {

// score = lssr^(1-w) * elastic^w.
float fuse_elastic(const MccParams& p, float lssr, float elastic) {
  const float w = p.elastic_weight;
  return w == 0.5f ? std::sqrt(lssr * elastic) : std::pow(lssr, 1.f - w) * std::pow(elastic, w);
}

void explain_orientation(const OrientationTerm& o, Explanation& ex) {
  ex.orientation_used = true;
  ex.orientation_agreement = o.agreement;
  ex.orientation_blocks = o.blocks;
  ex.orientation_robust = o.robust;
  ex.orientation_conflict_blocks = o.conflict;
  ex.orientation_rot = o.rot;
  ex.orientation_tx = o.tx;
  ex.orientation_ty = o.ty;
  ex.orientation_factor = o.factor;
}

void explain_lssr(const Scratch& s, int nr, int np, float lssr, Explanation& ex) {
  ex.lss_a = s.ra;
  ex.lss_b = s.rb;
  ex.lss_similarity.assign(s.l0.begin(), s.l0.begin() + nr);
  ex.relaxed.assign(s.l1.begin(), s.l1.begin() + nr);
  ex.top_a = s.ta;
  ex.top_b = s.tb;
  ex.top_relaxed = s.tr;
  ex.n_pairs = np;
  ex.lssr_score = lssr;
}

void explain_global(const GlobalFit& g, const GlobalTerm& gt, Explanation& ex) {
  ex.consistent_a = g.ca;
  ex.consistent_b = g.cb;
  ex.rotation_rad = g.rot;
  ex.tx = g.tx;
  ex.ty = g.ty;
  ex.n_consistent = g.nc;
  ex.overlap_a = gt.overlap_a;
  ex.overlap_b = gt.overlap_b;
  ex.global_score = gt.score;
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

  // 1-4. Local similarities, the LSS pairs, their relaxation, the LSS-R score.
  const int total = scan_pairs(cfg, a, b, s);
  const int nmin = std::min(a.n, b.n);
  const int np = cfg.pairs_for(nmin);
  const int nr = select_lss_pairs(s, total, nmin);
  if (nr == 0) return 0.f;
  relax_pairs(cfg, a, b, s, nr);
  const int ntop = std::min(np, nr);
  // Minutia reliability applies where both templates report minutia qualities.
  const bool reliable = (p.lssr_reliability_weight > 0.f || p.elastic_reliability_weight > 0.f) &&
                        has_qualities(a) && has_qualities(b);
  const float lssr = lssr_top_pairs(cfg, a, b, s, nr, np, reliable);

  // 5. Elastic consistency.  Pairs with lssr < elastic_gate skip the stage and score lssr (< the
  //    gate: every score >= the gate is exactly the ungated one; see biomatch/match.py).
  const bool staged = p.elastic_anchors > 0 && lssr >= p.elastic_gate;
  ElasticTerm e;
  float fused = lssr;
  if (staged) {
    e = elastic_term(cfg, a, b, s, ntop, reliable);
    fused = fuse_elastic(p, lssr, e.score);
    if (ex) explain_elastic(cfg, a, b, s, e, *ex);
  }

  // 6. Orientation-field agreement, for pairs through the elastic stage with both grids.  Where
  //    the factor applies (w > 0), the fused score is mapped onto the minutiae-only scale (8.).
  GlobalFit g;
  bool have_global = false;
  OrientationTerm o;
  const bool grids = staged && fused > 0.f && a.has_grid() && b.has_grid();
  const bool ori_applied = grids && p.orientation_weight > 0.f;
  if (grids && (ori_applied || ex)) {
    o = orientation_term(cfg, a, b, s, ntop, e, g, have_global);
    if (ex) explain_orientation(o, *ex);
  }
  // 8'. Where minutia reliability applies instead, its own curve maps the score onto that scale.
  const bool rel_applied = staged && reliable && !ori_applied;
  if (p.global_weight <= 0.f && ex == nullptr)
    return ori_applied ? cfg.orientation_scale(fused * o.factor) : rel_applied ? cfg.reliability_scale(fused) : fused;

  // 7. Global consistency (always for explain()): score = fused^(1-w) * global^w.
  if (!have_global) global_fit(p, a, b, s, ntop, g);
  const GlobalTerm gt = global_term(p, a, b, g);
  float score =
      p.global_weight > 0.f ? std::pow(fused, 1.f - p.global_weight) * std::pow(gt.score, p.global_weight) : fused;
  // 8. Where the orientation factor applies, the fused score goes through the monotone curve
  //    that sends the fused thresholds onto the minutiae-only ones: one scale for every pair.
  float ori_fused = score;
  if (ori_applied) {
    ori_fused = score * o.factor;
    score = cfg.orientation_scale(ori_fused);
  } else if (rel_applied) {
    score = cfg.reliability_scale(score);
  }
  if (ex) {
    explain_lssr(s, nr, np, lssr, *ex);
    explain_global(g, gt, *ex);
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
