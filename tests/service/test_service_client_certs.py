"""Client certificates as the alternative to API keys: ``biomatch serve --tls-client-ca``.

A CA, a server certificate and client certificates are made here (``cryptography``); the real
server runs on 127.0.0.1.  Checked: no certificate and no key is 401 (or, with
``--require-client-cert``, refused at the handshake); a certificate from another CA is refused at
the handshake; a registered certificate with role ``search`` is 200 on search and 403 on enrol;
an unregistered one and a revoked one are 401; the audit log names the certificate as who; bearer
keys keep working beside certificates; a client-supplied header does not stand for a certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from service_util import Server, auth, make_gallery, make_keys, record_json

from biomatch.service.auth import KeyStore, service_dir


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "biomatch test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, issuer=None, ca: bool = False, server: bool = False):
    """``(certificate, private key)``; self-signed when ``issuer`` is None, else signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    signer_cert, signer_key = issuer if issuer else (None, key)
    b = (x509.CertificateBuilder().subject_name(_name(subject))
         .issuer_name(signer_cert.subject if signer_cert else _name(subject)).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
    return b.sign(signer_key, hashes.SHA256()), key


def _write(folder, stem: str, cert, key=None):
    from cryptography.hazmat.primitives import serialization

    cert_path = folder / f"{stem}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return cert_path
    key_path = folder / f"{stem}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, the server's certificate, and client certificates: examiner (search), office (enrol),
    revoked (search, then revoked), stranger (the CA's, never registered), foreign (another CA's)."""
    d = tmp_path_factory.mktemp("pki")
    ca = _issue("biomatch test CA", ca=True)
    other_ca = _issue("another CA", ca=True)
    out = {"ca": _write(d, "ca", ca[0]), "server": _write(d, "server", *_issue("127.0.0.1", ca, server=True))}
    for name in ("examiner", "office", "revoked", "stranger"):
        out[name] = _write(d, name, *_issue(f"client {name}", ca))
    out["foreign"] = _write(d, "foreign", *_issue("client examiner", other_ca))  # same subject, other CA
    return out


class CertServer(Server):
    """``biomatch serve`` over TLS, asking for client certificates; ready when /healthz answers."""

    def __init__(self, gallery, pki, *extra):
        cert, key = pki["server"]
        super().__init__(gallery, "--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(pki["ca"]),
                         *extra)
        self.url = f"https://127.0.0.1:{self.port}"
        self.pki = pki

    def context(self, who: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki["ca"]))
        if who is not None:
            ctx.load_cert_chain(*map(str, self.pki[who]))
        return ctx

    def start(self, timeout_s: float = 90.0, ready_as: str | None = None):
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "biomatch", "serve", str(self.gallery), "--host",
                                          "127.0.0.1", "--port", str(self.port), *self.args],
                                         stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        ctx = self.context(ready_as)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2, verify=ctx).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling the readiness check
        self.stop()
        raise RuntimeError(f"server not ready in {timeout_s} s: {self.log.read_text()[-3000:]}")

    def client(self, who: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, verify=self.context(who))


def _audit(gallery) -> list[dict]:
    return [json.loads(line) for line in (service_dir(gallery) / "audit.log").read_text().splitlines()]


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "biomatch", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def served(tmp_path_factory, pki):
    gallery = make_gallery(tmp_path_factory.mktemp("certs") / "g", persons=6)
    keys = make_keys(gallery)
    for who, role in (("examiner", "search"), ("office", "enrol"), ("revoked", "search")):
        r = _cli("keys", "add-cert", gallery, "--cert", pki[who][0], "--role", role, "--name", who)
        assert r.returncode == 0, r.stderr
    server = CertServer(gallery, pki).start()
    try:
        yield server, keys, gallery
    finally:
        server.stop()


def test_registered_certificate_has_its_roles_and_is_named_in_the_audit(served):
    server, keys, gallery = served
    store = KeyStore(service_dir(gallery))
    examiner = next(k for k in store.list() if k.name == "examiner")
    assert examiner.kind == "cert" and examiner.cert["subject"].startswith("CN=client examiner")
    with server.client("examiner") as c:
        r = c.post("/v1/deduplicate", json=record_json("q", 2))
        assert r.status_code == 200, r.text
        assert r.json()["candidates"][0]["subject_id"] == "P-2"
        request_id = r.headers["x-request-id"]
        r = c.post("/v1/enrol", json=record_json("NEW-1", 40, impression=0))
        assert r.status_code == 403, r.text
        assert r.json()["field"] == "Authorization" and examiner.key_id in r.json()["detail"]
    entry = next(e for e in _audit(gallery) if e["request_id"] == request_id)
    assert entry["key_id"] == examiner.key_id and entry["cert_subject"] == examiner.cert["subject"]
    assert entry["operation"] == "deduplicate" and "P-2" in entry["subject_ids"]
    with server.client("office") as c:  # another certificate, another role
        r = c.post("/v1/enrol", json=record_json("NEW-2", 41, impression=0))
        assert r.status_code == 200 and r.json()["enrolled"], r.text


def test_no_certificate_and_no_key_is_401_and_keys_still_work(served):
    server, keys, _ = served
    with server.client() as c:  # TLS without a client certificate: allowed, but no identity
        r = c.post("/v1/deduplicate", json=record_json("q", 2))
        assert r.status_code == 401 and r.json()["field"] == "Authorization", r.text
        r = c.post("/v1/deduplicate", json=record_json("q", 2), headers=auth(keys["search"]))
        assert r.status_code == 200, r.text
        # A header that claims a certificate is nothing: the certificate comes from the connection only.
        r = c.post("/v1/deduplicate", json=record_json("q", 2),
                   headers={"X-Client-Cert": server.pki["examiner"][0].read_text().strip().replace("\n", " "),
                            "X-SSL-Client-Cert": "x", "ssl-client-cert": "x"})
        assert r.status_code == 401, r.text
    with server.client("office") as c:  # a bearer key beside a certificate: the key's roles count
        r = c.post("/v1/deduplicate", json=record_json("q", 2), headers=auth(keys["search"]))
        assert r.status_code == 200, r.text
        assert c.post("/v1/deduplicate", json=record_json("q", 2), headers=auth(keys["revoked"])).status_code == 401


def test_certificate_of_another_ca_is_refused_at_the_handshake(served):
    server, _, _ = served
    with server.client("foreign") as c:
        with pytest.raises(httpx.TransportError):
            c.post("/v1/deduplicate", json=record_json("q", 2))


def test_unregistered_and_revoked_certificates_are_401(served):
    server, _, gallery = served
    with server.client("stranger") as c:  # the right CA, never registered
        r = c.get("/v1/stats")
        assert r.status_code == 401 and "not registered" in r.json()["detail"], r.text
    revoked = next(k for k in KeyStore(service_dir(gallery)).list() if k.name == "revoked")
    with server.client("revoked") as c:
        assert c.post("/v1/deduplicate", json=record_json("q", 2)).status_code == 200  # before the revocation
        r = _cli("keys", "revoke", gallery, revoked.key_id)
        assert r.returncode == 0 and "certificate" in r.stdout, r.stderr
        r = c.post("/v1/deduplicate", json=record_json("q", 2))  # the same connection, the next request
        assert r.status_code == 401, r.text
        request_id = r.headers["x-request-id"]
    entry = next(e for e in _audit(gallery) if e["request_id"] == request_id)
    assert entry["key_id"] is None and entry["claimed_cert_sha256"] == revoked.digest and entry["status"] == 401
    # Revocation is final: the same certificate cannot be registered again.
    r = _cli("keys", "add-cert", gallery, "--cert", server.pki["revoked"][0], "--role", "admin")
    assert r.returncode != 0 and "revoked" in r.stderr


def test_keys_list_shows_certificates_never_a_private_key(served):
    server, _, gallery = served
    r = _cli("keys", "list", gallery, "--json")
    assert r.returncode == 0, r.stderr
    listed = {k["name"]: k for k in json.loads(r.stdout)}
    assert listed["examiner"]["kind"] == "cert" and len(listed["examiner"]["sha256"]) == 64
    assert listed["test search"]["kind"] == "key" and "sha256" not in listed["test search"]
    stored = (service_dir(gallery) / "keys.json").read_text()
    for who in ("examiner", "office", "revoked"):
        key_pem = server.pki[who][1].read_text()
        assert key_pem.splitlines()[1] not in stored  # no line of any private key
    r = _cli("keys", "add-cert", gallery, "--cert", server.pki["examiner"][1], "--role", "search")
    assert r.returncode != 0 and "BEGIN CERTIFICATE" in r.stderr  # a key file is not a certificate


def test_required_client_certificate_refuses_at_the_handshake(tmp_path, pki):
    gallery = make_gallery(tmp_path / "g", persons=4)
    store = KeyStore(service_dir(gallery))
    store.add_cert(pki["examiner"][0].read_bytes(), ["search"], "examiner")
    server = CertServer(gallery, pki, "--require-client-cert").start(ready_as="examiner")
    try:
        with server.client() as c:
            with pytest.raises(httpx.TransportError):
                c.get("/healthz")
        with server.client("examiner") as c:
            assert c.get("/v1/stats").status_code == 200
    finally:
        server.stop()


def test_client_ca_needs_tls(tmp_path, pki):
    gallery = make_gallery(tmp_path / "g", persons=2)
    r = _cli("serve", gallery, "--port", "0", "--tls-client-ca", pki["ca"])
    assert r.returncode != 0 and "--tls-client-ca" in r.stderr
