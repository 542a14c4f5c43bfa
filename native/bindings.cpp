// The only file of biomatch's native core that knows about Python (nanobind).
// Validation of user input happens in biomatch/match.py; here only shapes are
// rechecked, and the GIL is released around every native computation.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "mcc.hpp"

namespace nb = nanobind;
using namespace nb::literals;
using biomatch::Config;
using biomatch::MccParams;
using biomatch::Prepared;

namespace {

using Minutiae = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Grid = nb::ndarray<const uint8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// MatchParams as a dict (dataclasses.asdict) -> MccParams, one row of mcc_params.def per field:
// every field required, no other key accepted, so that Python never falls back on a C++ default.
MccParams params_from_dict(const nb::dict& d) {
  MccParams p;
  size_t found = 0;
#define BIOMATCH_MCC_PARAM(type, name, ...)                                           \
  if (d.contains(#name)) {                                                            \
    p.name = nb::cast<type>(d[#name]);                                                \
    ++found;                                                                          \
  } else {                                                                            \
    throw std::invalid_argument("MatchParams: missing field '" #name "'");            \
  }
#include "mcc_params.def"
#undef BIOMATCH_MCC_PARAM
  if (found != d.size()) {
    for (auto [key, value] : d) {
      const std::string k = nb::cast<std::string>(nb::str(key));
      bool known = false;
#define BIOMATCH_MCC_PARAM(type, name, ...) known = known || k == #name;
#include "mcc_params.def"
#undef BIOMATCH_MCC_PARAM
      if (!known) throw std::invalid_argument("MatchParams: unknown field '" + k + "'");
    }
  }
  return p;
}

// MccParams -> dict, the inverse of params_from_dict.
nb::dict params_to_dict(const MccParams& p) {
  nb::dict d;
#define BIOMATCH_MCC_PARAM(type, name, ...) d[#name] = p.name;
#include "mcc_params.def"
#undef BIOMATCH_MCC_PARAM
  return d;
}

// (name, C++ type, default) of every row of mcc_params.def, in order.
nb::list params_fields() {
  const MccParams defaults;
  nb::list out;
#define BIOMATCH_MCC_PARAM(type, name, ...) out.append(nb::make_tuple(#name, #type, defaults.name));
#include "mcc_params.def"
#undef BIOMATCH_MCC_PARAM
  return out;
}

int rows(const Minutiae& m) {
  if (m.shape(1) != 4) throw std::invalid_argument("minutiae: expected shape (n, 4)");
  return static_cast<int>(m.shape(0));
}

template <typename T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T>&& v, std::initializer_list<size_t> shape) {
  auto* heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(heap->data(), shape, owner);
}

nb::dict explanation_dict(const biomatch::Explanation& e) {
  nb::dict d;
  d["valid_cylinders"] = nb::make_tuple(e.valid_cylinders_a, e.valid_cylinders_b);
  d["lss_pairs"] = nb::make_tuple(e.lss_a, e.lss_b);
  d["lss_similarity"] = e.lss_similarity;
  d["relaxed_similarity"] = e.relaxed;
  d["n_pairs"] = e.n_pairs;
  d["top_pairs"] = nb::make_tuple(e.top_a, e.top_b);
  d["top_relaxed_similarity"] = e.top_relaxed;
  d["lssr_score"] = e.lssr_score;
  d["rotation_rad"] = e.rotation_rad;
  d["translation_px"] = nb::make_tuple(e.tx, e.ty);
  d["consistent_pairs"] = nb::make_tuple(e.consistent_a, e.consistent_b);
  d["n_consistent"] = e.n_consistent;
  d["overlap"] = nb::make_tuple(e.overlap_a, e.overlap_b);
  d["global_score"] = e.global_score;
  d["elastic_pairs"] = nb::make_tuple(e.elastic_a, e.elastic_b);
  d["n_elastic_consistent"] = e.n_elastic;
  d["elastic_overlap"] = nb::make_tuple(e.elastic_overlap_a, e.elastic_overlap_b);
  d["elastic_score"] = e.elastic_score;
  if (e.orientation_used) {
    d["orientation_agreement"] = e.orientation_agreement;
    d["orientation_blocks"] = e.orientation_blocks;
    d["orientation_robust_agreement"] = e.orientation_robust;
    d["orientation_conflict_blocks"] = e.orientation_conflict_blocks;
    d["orientation_rotation_rad"] = e.orientation_rot;
    d["orientation_translation_px"] = nb::make_tuple(e.orientation_tx, e.orientation_ty);
    d["orientation_factor"] = e.orientation_factor;
  } else {
    d["orientation_agreement"] = nb::none();
    d["orientation_blocks"] = 0;
    d["orientation_robust_agreement"] = nb::none();
    d["orientation_conflict_blocks"] = 0;
    d["orientation_rotation_rad"] = nb::none();
    d["orientation_translation_px"] = nb::none();
    d["orientation_factor"] = 1.f;
  }
  if (e.orientation_scaled) {
    d["orientation_fused_score"] = e.orientation_fused;
    d["orientation_scaled_score"] = e.score;
  } else {
    d["orientation_fused_score"] = nb::none();
    d["orientation_scaled_score"] = nb::none();
  }
  d["score"] = e.score;
  return d;
}

void bind_config(nb::module_& m) {
  // This module's instruction set; biomatch._native picks the module (cpu_kernels() of the
  // portable one says which the CPU runs).
  m.attr("kernel") = biomatch::kernel_name(biomatch::compiled_kernel());
  m.def("cpu_kernels", [] {
    std::vector<std::string> out;
    for (auto k : {biomatch::Kernel::Portable, biomatch::Kernel::Avx2, biomatch::Kernel::Avx512})
      if (biomatch::cpu_runs(k)) out.push_back(biomatch::kernel_name(k));
    return out;
  }, "The kernels this CPU runs, from the most portable to the fastest.");
  m.def("mcc_params_fields", &params_fields,
        "(name, C++ type, default) of every field of the native parameter table (mcc_params.def), in order.");

  nb::class_<Config>(m, "Config")
      .def("__init__", [](Config* self, const nb::dict& d) { new (self) Config(params_from_dict(d)); }, "params"_a)
      .def_prop_ro("kernel", [](const Config& c) { return biomatch::kernel_name(c.kernel()); })
      .def_prop_ro("words", &Config::words)
      .def_prop_ro("disc_cells", &Config::disc_cells)
      .def_prop_ro("params", [](const Config& c) { return params_to_dict(c.params()); },
                   "The parameters as given, converted to the native types (a dict of mcc_params.def's fields).")
      .def("orientation_scale", &Config::orientation_scale, "score"_a,
           "The mapping of a fused (orientation-weighted) score onto the minutiae-only scale, float32.")
      .def("reliability_scale", &Config::reliability_scale, "score"_a,
           "The mapping of a reliability-weighted score without the orientation factor onto the same scale, float32.");
}

void bind_prepared(nb::module_& m) {
  nb::class_<Prepared>(m, "Prepared")
      .def_prop_ro("n_minutiae", [](const Prepared& p) { return p.n; })
      .def_prop_ro("n_valid_cylinders", [](const Prepared& p) { return static_cast<int>(p.cyl_index.size()); })
      .def_prop_ro("has_orientation_grid", [](const Prepared& p) { return p.has_grid(); })
      .def_prop_ro("nbytes", [](const Prepared& p) {
        return (p.bits.size() + p.mask.size() + p.smask.size() + p.cyl_ones.size()) * 8 + p.cyl_full.size() +
               (p.dist.size() + p.rel.size() + p.radial.size() + 5 * p.x.size() + p.soa.size()) * 4 +
               (p.grid_px.size() + p.grid_py.size() + p.grid_pc.size() + p.grid_ps.size()) * 4 + p.grid.size();
      })
      .def("cylinders", [](const Prepared& p, const Config& cfg) {
        std::vector<int> index;
        std::vector<uint64_t> bits, mask;
        biomatch::unpack_cylinders(cfg, p, index, bits, mask);
        size_t nv = index.size(), w = static_cast<size_t>(cfg.full_words());
        return nb::make_tuple(to_numpy(std::move(index), {nv}), to_numpy(std::move(bits), {nv, w}),
                              to_numpy(std::move(mask), {nv, w}));
      }, "config"_a,
         "Valid cylinders in minutia order, unpacked (bit k*Ns*Ns + i*Ns + j): (minutia index int32 (v,), "
         "bits uint64 (v, words), mask uint64 (v, words)).")
      .def("pair_tables", [](const Prepared& p) {
        const size_t n = static_cast<size_t>(p.n);
        return nb::make_tuple(to_numpy(std::vector<float>(p.dist), {n, n}), to_numpy(std::vector<float>(p.rel), {n, n}),
                              to_numpy(std::vector<float>(p.radial), {n, n}));
      }, "The pairwise tables (for tests): distance px, relative direction and radial angle rad in [0, 2pi), "
         "float32 (n, n) each, row i relative to minutia i (y-up working frame).");

  m.def("prepare", [](const Config& cfg, Minutiae xyaq, std::optional<Grid> grid) {
    int n = rows(xyaq);
    const uint8_t* g = nullptr;
    int gr = 0, gc = 0;
    if (grid) {
      g = grid->data();
      gr = static_cast<int>(grid->shape(0));
      gc = static_cast<int>(grid->shape(1));
    }
    nb::gil_scoped_release nogil;
    return biomatch::prepare(cfg, xyaq.data(), n, g, gr, gc);
  }, "config"_a, "minutiae"_a, "grid"_a = nb::none(),
     "grid: optional uint8 (rows, cols) block orientations (degrees 0-179, 255 = no print).");
}

void bind_matching(nb::module_& m) {
  m.def("match", [](const Config& cfg, const Prepared& a, const Prepared& b) {
    nb::gil_scoped_release nogil;
    biomatch::Scratch s;
    return biomatch::match(cfg, a, b, s);
  }, "config"_a, "probe"_a, "candidate"_a);

  m.def("match_many", [](const Config& cfg, const Prepared& probe, const std::vector<const Prepared*>& cands,
                         int n_threads) {
    std::vector<float> out(cands.size());
    for (const Prepared* c : cands)
      if (c == nullptr) throw std::invalid_argument("candidates: None is not a prepared template");
    {
      nb::gil_scoped_release nogil;
      biomatch::match_many(cfg, probe, cands.data(), static_cast<int64_t>(cands.size()), out.data(), n_threads);
    }
    size_t n = out.size();
    return to_numpy(std::move(out), {n});
  }, "config"_a, "probe"_a, "candidates"_a, "n_threads"_a);
}

void bind_inspection(nb::module_& m) {
  m.def("explain", [](const Config& cfg, const Prepared& a, const Prepared& b) {
    biomatch::Explanation e;
    {
      nb::gil_scoped_release nogil;
      biomatch::Scratch s;
      e.score = biomatch::match(cfg, a, b, s, &e);
    }
    return explanation_dict(e);
  }, "config"_a, "probe"_a, "candidate"_a);

  m.def("cylinder_values", [](const Config& cfg, Minutiae xyaq) {
    int n = rows(xyaq);
    std::vector<float> values;
    std::vector<uint8_t> cells, valid;
    {
      nb::gil_scoped_release nogil;
      biomatch::cylinder_values(cfg, xyaq.data(), n, values, cells, valid);
    }
    const MccParams& p = cfg.params();
    size_t ns = p.spatial_cells, nd = p.angular_cells, nn = n;
    return nb::make_tuple(to_numpy(std::move(values), {nn, nd, ns, ns}),
                          to_numpy(std::move(cells), {nn, ns, ns}), to_numpy(std::move(valid), {nn}));
  }, "config"_a, "minutiae"_a,
     "Cell sums (n, Nd, Ns, Ns) float32, cell validity (n, Ns, Ns) uint8, cylinder validity (n,) uint8.");

  m.def("cylinder_similarity", &biomatch::cylinder_similarity, "config"_a, "a"_a, "ia"_a, "b"_a, "ib"_a);
}

// The code stage's exhaustive pass over one position (code_sums.cpp); checked in
// biomatch/retrieval/faiss_retrieval.py, shapes rechecked here.
void bind_code_stage(nb::module_& m) {
  using U8 = nb::ndarray<const uint8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
  using Keys = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
  using Bits = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
  using Sums = nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
  using Seen = nb::ndarray<uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
  m.def("code_sums", [](U8 codes, Keys keys, std::optional<Bits> removed, int64_t removed_offset, Bits probe,
                        U8 planes, int64_t total, float scale, Sums sums, Seen seen) {
    const int64_t n = static_cast<int64_t>(codes.shape(0));
    const size_t width = codes.shape(1);
    if (width % 8 || probe.shape(0) != width || planes.shape(1) != width || planes.shape(0) > 16)
      throw std::invalid_argument("code_sums: codes, probe and planes must have the same width (a multiple of 8 bytes)");
    if (static_cast<int64_t>(keys.shape(0)) != n || sums.shape(0) != seen.shape(0))
      throw std::invalid_argument("code_sums: one key per code, one seen flag per sum");
    if (removed && static_cast<int64_t>(removed->shape(0)) * 8 < removed_offset + n)
      throw std::invalid_argument("code_sums: the removed bitmap is shorter than the rows");
    const uint8_t* rm = removed ? removed->data() : nullptr;
    nb::gil_scoped_release nogil;
    biomatch::code_sums(reinterpret_cast<const uint64_t*>(codes.data()), n, static_cast<int>(width / 8),
                        keys.data(), rm, removed_offset, reinterpret_cast<const uint64_t*>(probe.data()),
                        reinterpret_cast<const uint64_t*>(planes.data()), static_cast<int>(planes.shape(0)),
                        total, scale, sums.data(), seen.data(), static_cast<int64_t>(sums.shape(0)));
  }, "codes"_a, "keys"_a, "removed"_a.none(), "removed_offset"_a, "probe"_a, "planes"_a, "total"_a, "scale"_a,
     "sums"_a, "seen"_a,
     "Adds scale * (total - 2 sum_l 2^l popcount((codes[i] ^ probe) & planes[l])) to sums[keys[i]] (from 0 "
     "where seen[keys[i]] is 0) for every row i not removed (packed bits, row i at bit removed_offset + i), and "
     "sets seen[keys[i]].");
  // The passes of one probe over every position, in one call (code_sums_blocked); each pass is a
  // tuple of code_sums' arguments before sums.  The arrays are held by the caller's list.
  using Pass = std::tuple<U8, Keys, std::optional<Bits>, int64_t, Bits, U8, int64_t, float>;
  m.def("code_sums_blocked", [](std::vector<Pass> passes, Sums sums, Seen seen, int64_t block_keys) {
    if (sums.shape(0) != seen.shape(0)) throw std::invalid_argument("code_sums_blocked: one seen flag per sum");
    std::vector<biomatch::CodePass> cp;
    cp.reserve(passes.size());
    for (const auto& [codes, keys, removed, removed_offset, probe, planes, total, scale] : passes) {
      const int64_t n = static_cast<int64_t>(codes.shape(0));
      const size_t width = codes.shape(1);
      if (width % 8 || probe.shape(0) != width || planes.shape(1) != width || planes.shape(0) > 16)
        throw std::invalid_argument("code_sums_blocked: codes, probe and planes must have the same width (a multiple of 8 bytes)");
      if (static_cast<int64_t>(keys.shape(0)) != n)
        throw std::invalid_argument("code_sums_blocked: one key per code");
      if (removed && static_cast<int64_t>(removed->shape(0)) * 8 < removed_offset + n)
        throw std::invalid_argument("code_sums_blocked: the removed bitmap is shorter than the rows");
      cp.push_back({reinterpret_cast<const uint64_t*>(codes.data()), n, static_cast<int>(width / 8), keys.data(),
                    removed ? removed->data() : nullptr, removed_offset, reinterpret_cast<const uint64_t*>(probe.data()),
                    reinterpret_cast<const uint64_t*>(planes.data()), static_cast<int>(planes.shape(0)), total, scale});
    }
    nb::gil_scoped_release nogil;
    biomatch::code_sums_blocked(cp.data(), static_cast<int>(cp.size()), sums.data(), seen.data(),
                                static_cast<int64_t>(sums.shape(0)), block_keys);
  }, "passes"_a, "sums"_a, "seen"_a, "block_keys"_a,
     "code_sums of every pass (codes, keys, removed, removed_offset, probe, planes, total, scale) in order, the "
     "same sums as one call after another; block_keys > 0 (every pass's keys non-decreasing) takes the persons "
     "that many at a time, every pass over them before the next block.");
}

}  // namespace

// The module's name (_portable, _avx2, _avx512) comes from the build, one module per kernel;
// the indirection expands the macro before NB_MODULE pastes it.
#define BIOMATCH_NB_MODULE(name, m) NB_MODULE(name, m)
BIOMATCH_NB_MODULE(BIOMATCH_MODULE, m) {
  m.doc() = "biomatch native core: Minutia Cylinder-Code matching (see biomatch.match).";
  bind_config(m);
  bind_prepared(m);
  bind_matching(m);
  bind_inspection(m);
  bind_code_stage(m);
}
