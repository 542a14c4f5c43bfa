"""Short fuzzing of every parser (seconds): hypothesis properties plus the mutation loop of
``benchmarks/fuzz_parsers.py`` over the real samples. The long run (100,000 inputs per parser)
is that benchmark; this keeps its harness working and catches regressions.

Pass criteria: only :class:`~biomatch.errors.BiomatchError` escapes; no input takes over 1 s
(hypothesis ``deadline``); the heap of a parse stays within 64 KiB + 8 x the input size.
"""

import importlib.util
import struct

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from biomatch.errors import BiomatchError  # noqa: E402
from biomatch.formats import an2k  # noqa: E402
from biomatch.formats import FORMATS, decode, dump, load_views
from biomatch.formats.native import decode_stored
from biomatch.template import FingerView, Template  # noqa: E402

from _util import REPO  # noqa: E402

STANDARD = [f for f in FORMATS if f != "native"]
FAST = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def finger_views(draw):
    n = draw(st.integers(0, 60))
    w, h = draw(st.integers(1, 2000)), draw(st.integers(1, 2000))
    x = draw(st.lists(st.floats(0, w, allow_nan=False), min_size=n, max_size=n))
    y = draw(st.lists(st.floats(0, h, allow_nan=False), min_size=n, max_size=n))
    a = draw(st.lists(st.floats(0, 6.28, allow_nan=False), min_size=n, max_size=n))
    kind = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    q = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))
    t = Template.from_arrays(np.array(x, np.float32), np.array(y, np.float32), np.array(a), kind=np.array(kind),
                             quality=np.array(q), width=w, height=h, print_quality=draw(st.integers(0, 100)))
    return FingerView(t, position=draw(st.integers(0, 15)), view_number=draw(st.integers(0, 15)),
                      impression_type=draw(st.sampled_from([0, 1, 2, 3, 8, 9])))


@FAST
@given(views=st.lists(finger_views(), min_size=1, max_size=4), fmt=st.sampled_from(STANDARD),
       dpi=st.sampled_from([500, 569, 1000, 400]))
def test_generated_records_round_trip_exactly_after_one_pass(views, fmt, dpi):
    once = load_views(dump(views, fmt, dpi=dpi))
    assert [(v.position, v.view_number, v.impression_type) for v in once] == \
        [(v.position, v.view_number, v.impression_type) for v in views]
    assert dump(list(once), fmt, dpi=dpi) == dump(list(load_views(dump(list(once), fmt, dpi=dpi))), fmt, dpi=dpi)


@FAST
@given(body=st.binary(max_size=300), head=st.sampled_from([b"FMR\0 20\0", b"FMR\0030\0", b"BMT1", b""]),
       fmt=st.sampled_from(list(FORMATS) + [None]))
def test_random_bytes_raise_only_project_errors(body, head, fmt):
    try:
        load_views(head + body, fmt)
    except BiomatchError:
        pass


@st.composite
def tagged_transactions(draw):
    def record(t, fields):
        body = b"".join(b"%d.%03d:" % (t, n) + v + b"\x1d" for n, v in fields)[:-1] + b"\x1c"
        claimed = draw(st.sampled_from(["right", "short", "long", "huge"]))
        digits = len(str(len(body) + 10))
        true_len = len(b"%d.001:" % t) + digits + 1 + len(body)
        value = {"right": true_len, "short": true_len - 3, "long": true_len + 5, "huge": 10**9}[claimed]
        return b"%d.001:%0*d\x1d" % (t, digits, value) + body

    sep = st.sampled_from([b"\x1d", b"\x1e", b"\x1f", b":", b"."])
    value = st.lists(st.one_of(st.binary(max_size=6), sep), max_size=8).map(b"".join)
    n = draw(st.integers(0, 3))
    types = draw(st.lists(st.sampled_from([2, 4, 9, 10, 13, 14]), min_size=n, max_size=n))
    cnt = b"1\x1f%d" % n + b"".join(b"\x1e%d\x1f%02d" % (t, i) for i, t in enumerate(types))
    out = record(1, [(2, b"0500"), (3, cnt), (11, b"19.69"), (12, draw(value))])
    for i, t in enumerate(types):
        if t == 4:
            out += struct.pack(">IBB6sBHHB", 18 + 4, i, 0, bytes([draw(st.integers(0, 255))]) + b"\xff" * 5, 0,
                               draw(st.integers(0, 3)), 2, draw(st.integers(0, 7))) + draw(st.binary(min_size=4, max_size=4))
        else:
            fields = [(2, b"%02d" % i)] + [(draw(st.integers(3, 20)), draw(value)) for _ in range(draw(st.integers(0, 5)))]
            if t == 9:
                fields.append((12, draw(st.sampled_from([b"001\x1f01320714248\x1f0\x1fA", b"1\x1f999\x1f", b""]))))
            out += record(t, fields)
    return out


@FAST
@given(data=tagged_transactions())
def test_generated_transactions_raise_only_project_errors(data):
    try:
        an2k.read_enrolment(data, decode_images=True)
    except BiomatchError:
        pass


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_parsers", REPO / "benchmarks" / "fuzz_parsers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mutation_loop_over_real_samples():
    fuzz = _harness()
    targets = fuzz.targets()
    assert {"iso2005", "iso2011", "ansi378", "bmt1"} <= set(targets)
    for name, (fn, seeds) in targets.items():
        n = 100 if name == "wsq-decode" else 300
        r = fuzz.run(name, fn, seeds, n, seed=7, trace_memory=True, crashes=None)
        assert r["failures"] == 0, r
        assert r["over_heap_bound"] == 0, r
        assert r["max_s_per_input"] < 1.0 or name == "wsq-decode", r  # the worker may (re)start once


def test_bmt1_random_bytes():
    rng = np.random.default_rng(0)
    for n in range(0, 200, 7):
        for f in (decode, decode_stored):
            try:
                f(b"BMT1" + rng.bytes(n))
            except BiomatchError:
                pass
