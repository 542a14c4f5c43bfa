// Internals shared by the matcher's translation units (never included by bindings.cpp):
// angle helpers, the cell geometry, the doubled-angle table and the AVX-512 switch.
#pragma once

#include <cmath>
#include <cstdint>

#include "mcc.hpp"

// The vector code paths follow the instruction set this module is compiled for (one module
// per kernel, see CMakeLists.txt): never a run-time switch inside a module.
#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512VPOPCNTDQ__)
#include <immintrin.h>
#define BIOMATCH_HAVE_AVX512 1
#elif defined(__AVX2__) && defined(__POPCNT__)
#include <immintrin.h>
#define BIOMATCH_HAVE_AVX2 1
#endif

namespace biomatch::detail {

// Floats in one vector register of the module's instruction set: the width of the loops written
// with GCC/Clang vector extensions (SSE on the portable x86-64-v2 module; wider generic vectors
// would be split through the stack).  Element-wise IEEE operations: the same bits for any width.
#if defined(BIOMATCH_HAVE_AVX512)
constexpr int kFloatLanes = 16;
#elif defined(BIOMATCH_HAVE_AVX2)
constexpr int kFloatLanes = 8;
#else
constexpr int kFloatLanes = 4;
#endif

// Bits set in x: one POPCNT instruction on x86-64 (every module targets x86-64-v2 at least,
// see CMakeLists.txt; without it GCC calls a library function, even for a hand-written bit
// count, which it recognises), and the native instruction on other targets.
inline uint64_t popcount64(uint64_t x) { return static_cast<uint64_t>(__builtin_popcountll(x)); }

constexpr float kPi = 3.14159265358979323846f;
constexpr float kTwoPi = 2.f * kPi;
constexpr float kDeg = kPi / 180.f;

inline float wrap_pi(float a) {  // to [-pi, pi)
  a = a - kTwoPi * std::floor((a + kPi) / kTwoPi);
  return a;
}

inline float abs_angle_diff(float a, float b) {  // a, b in [0, 2pi): |wrap(a - b)|
  float d = std::fabs(a - b);
  return std::min(d, kTwoPi - d);
}

inline float sigmoid(float v, float mu, float tau) { return 1.f / (1.f + std::exp(-tau * (v - mu))); }

// Bins of the LSS similarity histogram (select_lss_pairs), filled by the scan.  A power of 2:
// sim * kLssBins >= thr is then exactly sim >= thr / kLssBins.
constexpr int kLssBins = 128;

struct Geometry {  // cell geometry shared by Config, prepare() and cylinder_values()
  int ns, nd;
  float ds, dd, r, sig_s, sig_d, gs_norm, reach;
  explicit Geometry(const MccParams& p)
      : ns(p.spatial_cells), nd(p.angular_cells), ds(2.f * p.radius_px / p.spatial_cells),
        dd(kTwoPi / p.angular_cells), r(p.radius_px), sig_s(p.sigma_spatial_px),
        sig_d(p.sigma_angular_deg * kDeg), gs_norm(1.f / (p.sigma_spatial_px * std::sqrt(kTwoPi))),
        reach(3.f * p.sigma_spatial_px) {}
  float centre(int i) const { return ds * (i - 0.5f * (ns - 1)); }
  // Directional contribution C_D: Gaussian area over the angular cell (Section 3.1).
  float angular(int k, float dtheta) const {
    float phi_k = -kPi + (k + 0.5f) * dd;
    float a = wrap_pi(phi_k - dtheta);
    float s = 1.f / (sig_d * std::sqrt(2.f));
    return 0.5f * (std::erf((a + 0.5f * dd) * s) - std::erf((a - 0.5f * dd) * s));
  }
};

constexpr uint8_t kGridNone = 180;  // Prepared::grid: a cell without print

// cos and sin of twice each whole-degree orientation, and (0, 0) for kGridNone.
struct DoubledAngles {
  float c[kGridNone + 1], s[kGridNone + 1];
  DoubledAngles() {
    for (int v = 0; v < kGridNone; ++v) {
      const double a2 = 2.0 * v * (3.14159265358979323846 / 180.0);
      c[v] = static_cast<float>(std::cos(a2));
      s[v] = static_cast<float>(std::sin(a2));
    }
    c[kGridNone] = s[kGridNone] = 0.f;
  }
};

inline const DoubledAngles& doubled_angles() {
  static const DoubledAngles table;  // immutable after its (thread-safe) construction
  return table;
}

}  // namespace biomatch::detail
