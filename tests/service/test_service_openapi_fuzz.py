"""Schemathesis against the real server's OpenAPI document: no 5xx, and every refusal a 4xx whose JSON
body names the field at fault.

Every operation of ``/openapi.json`` gets ``MAX_EXAMPLES`` requests that fit its schema (positive)
and as many that break it (negative: wrong types, missing or extra fields, out-of-range values),
sent with a key holding every role (so that requests get past authentication to validation).
Multipart bodies are generated in positive mode only: schemathesis 4.32 cannot generate negative
ones with binary parts (``ValueError: Unsupported type: 'Binary'`` inside its generator); their
parser's refusals are tested by hand in test_service_inputs.py.  The same generator error can
end an operation's negative run early on long runs: it is reported (``-s``), not hidden.  Derandomised: the same
requests on every run.  Bounded: ~30 s on the 2-CPU machine (``BIOMATCH_FUZZ_EXAMPLES`` raises it).
"""

from __future__ import annotations

import os

import pytest

from service_util import auth

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("BIOMATCH_FUZZ_EXAMPLES", "20"))
# A refusal of the request itself names its field; 404 (no such subject or case) and 409 (the
# gallery holds it already) are about the gallery's content, not the request's shape.
_MUST_NAME_FIELD = {400, 401, 403, 413, 415, 422}


def _problem(response) -> str | None:
    if response.status_code >= 500:
        return f"server error {response.status_code}"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body"
    if not isinstance(body, dict) or not {"detail", "field", "error"} <= set(body):
        return f"{response.status_code} body is not {{detail, field, error}}: {str(body)[:200]}"
    if response.status_code in _MUST_NAME_FIELD and not body["field"]:
        return f"{response.status_code} names no field: {body['detail'][:200]}"
    if body["field"] and response.status_code == 422 and body["field"].split("[")[0].split(".")[0] not in \
            body["detail"]:
        return f"422 field {body['field']!r} not in its detail: {body['detail'][:200]}"
    return None


def test_no_5xx_and_every_refusal_names_its_field(served):
    server, keys, _ = served
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    headers = auth(keys["all"])
    problems: list[str] = []
    calls = {"n": 0}
    gaps: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 14
    for op in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            multipart = any(b.media_type == "multipart/form-data" for b in op.body)
            media = "application/json" if multipart and mode is schemathesis.GenerationMode.NEGATIVE else None

            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode, media_type=media))
            def run(case):
                response = case.call(base_url=server.url, headers=headers, timeout=60)
                calls["n"] += 1
                why = _problem(response)
                if why and len(problems) < 50:
                    problems.append(f"{op.label} [{mode.value}] {why}\n    {case.as_curl_command()[:400]}")

            before = calls["n"]
            try:
                run()
            except Unsatisfiable:  # nothing to break: an operation without parameters or body (negative mode)
                assert mode is schemathesis.GenerationMode.NEGATIVE, op.label
            except ValueError as exc:  # schemathesis's own generator failing, not the server
                if "Unsupported type" not in str(exc):
                    raise
                gaps.append(f"{op.label} [{mode.value}]: schemathesis stopped generating after "
                            f"{calls['n'] - before} requests ({exc})")
    print(f"{calls['n']} requests over {len(operations)} operations", *gaps, sep="\n")
    assert calls["n"] >= len(operations) * 2
    assert not problems, "\n".join(problems)
