// Config: the parameters checked once, and the tables every match reads (disc cells, the
// relaxation sigmoids, n_P per template size, the orientation-score mapping).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "mcc_internal.hpp"

namespace biomatch {

using namespace detail;

namespace {

// n_P for min(nA, nB) = nmin (Config::pairs_for tabulates it).
int pairs_eval(const MccParams& p, int nmin) {
  return p.pairs_min +
         static_cast<int>(std::lround(sigmoid(float(nmin), p.pairs_mu, p.pairs_tau) * (p.pairs_max - p.pairs_min)));
}

void check_curve(const std::vector<float>& f, const std::vector<float>& t, const std::string& names) {
  auto bad = [&](const char* what) { throw std::invalid_argument(names + ": expected " + what); };
  if (f.size() < 2 || f.size() != t.size()) bad("the same length, >= 2");
  for (size_t k = 0; k < f.size(); ++k) {
    if (!std::isfinite(f[k]) || !std::isfinite(t[k])) bad("finite numbers");
    if (k > 0 && !(f[k] > f[k - 1] && t[k] > t[k - 1])) bad("strictly increasing");
  }
}

void check_params(const MccParams& p) {
  auto bad = [](const char* what) { throw std::invalid_argument(what); };
  if (!(p.lssr_reliability_weight >= 0.f && p.lssr_reliability_weight <= 1.f) ||
      !(p.elastic_reliability_weight >= 0.f && p.elastic_reliability_weight <= 1.f))
    bad("lssr_reliability_weight/elastic_reliability_weight: expected 0..1");
  if (!(p.radius_px > 0)) bad("radius_px: expected > 0");
  if (p.spatial_cells < 2 || p.spatial_cells > 64) bad("spatial_cells: expected 2..64");
  if (p.angular_cells < 1 || p.angular_cells > 32) bad("angular_cells: expected 1..32");
  if (!(p.sigma_spatial_px > 0) || !(p.sigma_angular_deg > 0)) bad("sigmas: expected > 0");
  if (p.pairs_min < 1 || p.pairs_max < p.pairs_min) bad("pairs_min/pairs_max: expected 1 <= min <= max");
  if (p.relax_iterations < 0 || p.relax_iterations > 100) bad("relax_iterations: expected 0..100");
  if (p.spatial_cells * p.spatial_cells * p.angular_cells >= 65536)
    bad("spatial_cells^2 * angular_cells: expected < 65536");
  if (!(p.orientation_zero_credit_deg >= 0.f && p.orientation_zero_credit_deg <= p.orientation_conflict_deg &&
        p.orientation_conflict_deg > 0.f && p.orientation_conflict_deg <= 90.f))
    bad("orientation_zero_credit_deg/orientation_conflict_deg: expected 0 <= zero credit <= conflict, 0 < conflict <= 90");
  if (!(p.orientation_conflict_weight >= 0.f && p.orientation_conflict_weight <= 1.f) ||
      !(p.orientation_conflict_max_fraction >= 0.f && p.orientation_conflict_max_fraction < 1.f))
    bad("orientation_conflict_weight/orientation_conflict_max_fraction: expected 0..1 and 0..<1");
  check_curve(p.orientation_scale_from, p.orientation_scale_to, "orientation_scale_from/orientation_scale_to");
  check_curve(p.reliability_scale_from, p.reliability_scale_to, "reliability_scale_from/reliability_scale_to");
}

// The monotone piecewise-linear curve through (f[k], t[k]) at s.  Segment k holds
// [f[k], f[k + 1]); the last point's segment continues the last slope (and the first one's
// below f[0]).  At a point the result is exactly its image; inside a segment it is clamped to
// the segment's images, so float rounding cannot break monotonicity.
float curve(const std::vector<float>& f, const std::vector<float>& t, float s) {
  const int last = static_cast<int>(f.size()) - 1;
  int k = 0;
  while (k < last && f[k + 1] <= s) ++k;
  float v;
  if (k == last) {
    v = t[last] + (s - f[last]) * ((t[last] - t[last - 1]) / (f[last] - f[last - 1]));
  } else {
    v = t[k] + (s - f[k]) * ((t[k + 1] - t[k]) / (f[k + 1] - f[k]));
    if (s >= f[0]) v = std::clamp(v, t[k], t[k + 1]);
  }
  return std::clamp(v, 0.f, 1.f);
}

}  // namespace

Kernel compiled_kernel() {
#if defined(BIOMATCH_HAVE_AVX512)
  return Kernel::Avx512;
#elif defined(BIOMATCH_HAVE_AVX2)
  return Kernel::Avx2;
#else
  return Kernel::Portable;
#endif
}

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::Avx2: return "avx2";
    case Kernel::Avx512: return "avx512";
    default: return "portable";
  }
}

bool cpu_runs(Kernel k) {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  // The features -march=x86-64-v2 / v3 / v4 (+ VPOPCNTDQ) let the compiler use, as in
  // CMakeLists.txt; checked one by one (older compilers lack the level names).
  __builtin_cpu_init();
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                  __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                  __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("avx") &&
                  __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("f16c") &&
                  __builtin_cpu_supports("movbe") && __builtin_cpu_supports("lzcnt");
  const bool v2 = __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("sse4.2") &&
                  __builtin_cpu_supports("ssse3");
  switch (k) {
    case Kernel::Portable: return v2;
    case Kernel::Avx2: return v3;
    case Kernel::Avx512:
      return v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512vpopcntdq");
  }
  return false;
#else
  return k == Kernel::Portable;
#endif
}

Config::Config(const MccParams& p) : p_(p) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id.fetch_add(1, std::memory_order_relaxed);
  check_params(p);
  Geometry g(p);
  const int ns = p.spatial_cells;
  disc_index_.assign(ns * ns, -1);
  int disc = 0;
  for (int i = 0; i < ns; ++i)
    for (int j = 0; j < ns; ++j)
      if (g.centre(i) * g.centre(i) + g.centre(j) * g.centre(j) <= p.radius_px * p.radius_px)
        disc_index_[i * ns + j] = disc++;
  disc_cells_ = disc * p.angular_cells;
  words_ = std::max(1, (disc_cells_ + 63) / 64);
  mask_words_ = std::max(1, (disc + 63) / 64);
  min_common_ = static_cast<int>(std::ceil(p.min_matchable_cells_fraction * disc_cells_));
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
  dist_cutoff_ = nl;  // the table decreases (tau < 0): from this index on, rho is negligible
  while (dist_cutoff_ > 0 && lut_dist_[dist_cutoff_ - 1] < 1e-4f) --dist_cutoff_;
  if (!(p.relax_distance_tau_per_px < 0)) dist_cutoff_ = nl + 1;
  pairs_table_.resize(256);
  for (int n = 0; n < 256; ++n) pairs_table_[n] = pairs_eval(p, n);
  elastic_cos_max_ = std::cos(p.elastic_angle_deg * kDeg);
  elastic_cluster_cos_ = std::cos(p.elastic_cluster_deg * kDeg);
  orientation_credit_cos_ = std::cos(2.f * p.orientation_zero_credit_deg * kDeg);
  orientation_conflict_cos_ = std::cos(2.f * p.orientation_conflict_deg * kDeg);
}

int Config::pairs_for(int nmin) const {
  return nmin >= 0 && nmin < static_cast<int>(pairs_table_.size()) ? pairs_table_[nmin] : pairs_eval(p_, nmin);
}

float Config::orientation_scale(float s) const { return curve(p_.orientation_scale_from, p_.orientation_scale_to, s); }

float Config::reliability_scale(float s) const { return curve(p_.reliability_scale_from, p_.reliability_scale_to, s); }

}  // namespace biomatch
