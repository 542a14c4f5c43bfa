"""Every route refuses a missing, unknown or revoked key (401) and a key without its role (403)."""

from __future__ import annotations

import pytest

from service_util import ROLES, auth

# (method, path, roles that may call it)
ROUTES = [
    ("POST", "/v1/enrol", {"enrol"}),
    ("POST", "/v1/deduplicate", {"search"}),
    ("POST", "/v1/identify", {"search"}),
    ("POST", "/v1/subjects/P-1/verify", {"search"}),
    ("GET", "/v1/subjects/P-1", {"search", "adjudicate", "admin"}),
    ("DELETE", "/v1/subjects/NOBODY", {"admin"}),
    ("GET", "/v1/stats", {"search", "admin"}),
    ("GET", "/v1/reviews", {"adjudicate"}),
    ("GET", "/v1/reviews/rv_x", {"adjudicate"}),
    ("POST", "/v1/reviews/rv_x/outcome", {"adjudicate"}),
    ("GET", "/v1/audit/subjects/P-1", {"audit"}),
    ("GET", "/v1/audit/verify", {"audit"}),
    ("GET", "/metrics", {"admin", "metrics"}),
]


def _call(c, method, path, headers):
    # An empty JSON object: a caller with the role gets past auth and is refused for the body (4xx)
    kw = {"json": {}} if method == "POST" else {}
    return c.request(method, path, headers=headers, **kw)


@pytest.mark.parametrize("method,path,allowed", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_route_roles(served, method, path, allowed):
    server, keys, _ = served
    with server.client() as c:
        for headers in ({}, auth("bmk_0123456789abcdef_" + "A" * 43), {"Authorization": "Basic dXNlcjpwYXNz"},
                        auth(keys["revoked"]), auth(keys["search"] + "x")):
            r = _call(c, method, path, headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and r.json()["field"] == "Authorization"
        for role in ROLES:
            r = _call(c, method, path, auth(keys[role]))
            if role in allowed:
                assert r.status_code not in (401, 403), (role, r.text)
                assert r.status_code < 500, (role, r.text)
            else:
                assert r.status_code == 403, (role, r.text)
                assert r.json()["error"] == "forbidden"
        assert _call(c, method, path, auth(keys["all"])).status_code not in (401, 403)


def test_revocation_takes_effect_without_restart(served):
    server, _, gallery = served
    from biomatch.service.auth import KeyStore

    store = KeyStore(gallery / "service")
    rec, token = store.create(["search"], "short-lived")
    with server.client() as c:
        assert c.get("/v1/stats", headers=auth(token)).status_code == 200
        store.revoke(rec.key_id)
        assert c.get("/v1/stats", headers=auth(token)).status_code == 401


def test_keys_cli(served, capsys):
    _, _, gallery = served
    from biomatch.cli import main

    assert main(["keys", "create", str(gallery), "--role", "search", "--role", "audit", "--name", "ops"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("bmk_") and len(out.split("_", 2)[2]) == 43
    assert main(["keys", "list", str(gallery), "--json"]) == 0
    listing = capsys.readouterr().out
    assert out not in listing and out.split("_", 2)[2] not in listing      # never the key itself
    key_id = out.split("_")[1]
    assert key_id in listing and '"ops"' in listing
    assert main(["keys", "revoke", str(gallery), key_id]) == 0
    assert main(["keys", "revoke", str(gallery), "ffffffffffffffff"]) == 2
    assert main(["keys", "create", str(gallery), "--role", "root"]) == 2
    import stat
    assert stat.S_IMODE((gallery / "service" / "keys.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((gallery / "service").stat().st_mode) == 0o700
