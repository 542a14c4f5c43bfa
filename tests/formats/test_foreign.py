"""Explicit readers of non-conformant writers (afis, nbis-py) and the ``dpi=`` override."""

import numpy as np
import pytest

from biomatch.errors import FormatError, InvalidInputError
from biomatch.formats import foreign
from biomatch.formats import dump, load, load_views
from biomatch.template import Template

from _util import REPO


def _template(n=25, seed=2):
    rng = np.random.default_rng(seed)
    return Template.from_arrays(rng.uniform(0, 299, n), rng.uniform(0, 399, n), rng.uniform(0, 2 * np.pi, n),
                                kind=rng.integers(1, 3, n), quality=rng.integers(0, 101, n), width=300, height=400,
                                print_quality=40)


def _fuzz_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_parsers", REPO / "benchmarks" / "fuzz_parsers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dpi", [500, 1000])
def test_afis_layout_converts_to_the_standard_record(dpi):
    record = dump(_template(), "iso19794-2:2005", dpi=dpi)
    afis_like = _fuzz_module().afis_iso2005_layout(record)
    assert afis_like[4:8] == b"020\0" and int.from_bytes(afis_like[18:20], "big") == dpi
    with pytest.raises(FormatError, match="unsupported version"):
        load(afis_like)  # never read silently
    assert foreign.from_afis_iso2005(afis_like) == record


def test_nbis_py_layout_converts_with_the_callers_resolution():
    record = dump(_template(), "iso19794-2:2005", dpi=569)
    nbis_like = _fuzz_module().nbis_py_iso2005_layout(record)
    assert len(nbis_like) == len(record) - 4
    with pytest.raises(FormatError, match="0 pixels/cm"):
        load(nbis_like)
    assert foreign.from_nbis_py_iso2005(nbis_like, 569) == record
    with pytest.raises(InvalidInputError, match="dpi"):
        foreign.from_nbis_py_iso2005(nbis_like, 0)


def test_foreign_converters_refuse_other_layouts_with_an_offset():
    record = dump(_template(), "iso19794-2:2005")
    fuzz = _fuzz_module()
    afis_like, nbis_like = fuzz.afis_iso2005_layout(record), fuzz.nbis_py_iso2005_layout(record)
    cases = [(foreign.from_afis_iso2005, record, "version", 4),
             (foreign.from_afis_iso2005, afis_like + b"\0", "record length", 8),
             (foreign.from_afis_iso2005, afis_like[:-7], "record length", 8),
             (lambda d: foreign.from_nbis_py_iso2005(d, 500), record, "record length|resolution", None),
             (lambda d: foreign.from_nbis_py_iso2005(d, 500), nbis_like[:-1], "record length", 8)]
    for fn, data, message, offset in cases:
        with pytest.raises(FormatError, match=message) as info:
            fn(data)
        assert info.value.offset is not None and (offset is None or info.value.offset == offset)
    for n in range(len(afis_like)):
        with pytest.raises(FormatError):
            foreign.from_afis_iso2005(afis_like[:n])


def test_dpi_override_replaces_the_stated_resolution():
    t = _template()
    wrong = dump(t, "iso19794-2:2011", dpi=251)  # what afis 1.2.7 states for 500 ppi (99 px/cm) ...
    right = dump(t, "iso19794-2:2011", dpi=500)
    # ... around coordinates that are really at 500 ppi: rewrite the resolution fields only
    patched = bytearray(right)
    at = right.index((197).to_bytes(2, "big") * 2)
    patched[at:at + 4] = (99).to_bytes(2, "big") * 2
    assert abs(load(bytes(patched)).width - t.width * 500 / 251.46) < 2  # as stated: scaled wrongly
    (view,) = load_views(bytes(patched), dpi=500)
    assert view.dpi == 500 and view.template == load(right)
    assert load(wrong, dpi=99 * 2.54) == load(wrong)  # the same resolution as stated: the same template
    with pytest.raises(InvalidInputError, match="dpi"):
        load(right, dpi=50)
    with pytest.raises(InvalidInputError, match="native"):
        load(dump(t), dpi=500)


def test_real_afis_records_when_installed():
    templates = pytest.importorskip("afis.algorithms.templates")
    rng = np.random.default_rng(4)
    n = 12
    m = np.c_[rng.uniform(0, 300, n), rng.uniform(0, 300, n), rng.uniform(0, 2 * np.pi, n),
              rng.integers(0, 2, n), rng.uniform(0, 1, n)]
    header = templates.FingerprintTemplateHeader(width=320, height=330, resolution_x=500, resolution_y=500)
    t05 = load(foreign.from_afis_iso2005(templates.encode_iso19794_2(header, m)))
    t11 = load(templates.encode_iso19794_2_2011(header, m), dpi=500)
    for t in (t05, t11):
        assert (t.width, t.height) == (320, 330)
        np.testing.assert_allclose(t.minutiae["x"], np.round(m[:, 0]), atol=1e-4)
        # afis's theta is the standard's direction (pinned on synthetic prints in
        # benchmarks/interop.py), which is biomatch's
        d = (np.degrees(t.minutiae["angle"]) - np.degrees(m[:, 2]) + 180) % 360 - 180
        assert np.abs(d).max() < 360 / 256
        assert list(t.minutiae["kind"]) == list((m[:, 3] + 1).astype(int))
    assert list(t05.minutiae["quality"]) == list(np.round(np.round(m[:, 4] * 255) * 100 / 255).astype(int))


def test_convert_cli_reads_foreign_layouts_and_a_stated_resolution(tmp_path):
    from biomatch.cli import main

    t = _template()
    record = dump(t, "iso19794-2:2005", dpi=569)
    fuzz = _fuzz_module()
    cases = {"afis.iso": (fuzz.afis_iso2005_layout(record), ["--foreign", "afis-iso2005"]),
             "nbis.iso": (fuzz.nbis_py_iso2005_layout(record), ["--foreign", "nbis-py-iso2005", "--in-dpi", "569"]),
             "wrong_res.iso": (dump(t, "iso19794-2:2005", dpi=250), ["--in-dpi", "500"])}
    for name, (data, options) in cases.items():
        src, out = tmp_path / name, tmp_path / (name + ".bmt")
        src.write_bytes(data)
        assert main(["convert", str(src), str(out), "--to", "native", *options]) == 0
        got = load(out)
        assert len(got) == len(t)
        expect = load(record) if name != "wrong_res.iso" else load(dump(t, "iso19794-2:2005", dpi=250), dpi=500)
        np.testing.assert_allclose(got.minutiae["x"], expect.minutiae["x"], atol=1e-3)
    # nbis-py's records state no resolution: the CLI asks for it by name rather than guessing.
    src = tmp_path / "nbis.iso"
    assert main(["convert", str(src), str(tmp_path / "x.bmt"), "--to", "native", "--foreign", "nbis-py-iso2005"]) != 0
