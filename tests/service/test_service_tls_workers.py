"""``biomatch serve`` with TLS (a self-signed certificate made here) and with two worker processes:
the audit chain shared by both stays intact, and /metrics sums them."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys

import httpx
import pytest
from service_util import Server, auth, make_gallery, make_keys, record_json


def _self_signed(folder):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class TlsServer(Server):
    def __init__(self, gallery, cert, key, *args):
        super().__init__(gallery, "--certfile", str(cert), "--keyfile", str(key), *args)
        self.url = f"https://127.0.0.1:{self.port}"
        self.trust = ssl.create_default_context(cafile=str(cert))  # the self-signed certificate, and only it

    def start(self, timeout_s: float = 90.0):
        import time

        env_url = self.url  # readiness through TLS, verified against the certificate
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "biomatch", "serve", str(self.gallery), "--host",
                                          "127.0.0.1", "--port", str(self.port), *self.args],
                                         stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(env_url + "/healthz", timeout=2, verify=self.trust).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout_s} s: {self.log.read_text()[-3000:]}")

    def client(self, timeout_s: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s, verify=self.trust)


def test_tls_serves_and_plain_http_does_not(tmp_path):
    gallery = make_gallery(tmp_path / "g", persons=6)
    keys = make_keys(gallery)
    cert, key = _self_signed(tmp_path)
    server = TlsServer(gallery, cert, key).start()
    try:
        with server.client() as c:
            r = c.post("/v1/deduplicate", json=record_json("q", 2), headers=auth(keys["search"]))
            assert r.status_code == 200 and r.json()["candidates"][0]["subject_id"] == "P-2", r.text
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port: no answer
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        with pytest.raises(httpx.TransportError):  # a client that does not trust the certificate
            httpx.get(server.url + "/healthz", timeout=5)
    finally:
        server.stop()


def test_two_workers_share_one_audit_chain_and_sum_their_metrics(tmp_path):
    gallery = make_gallery(tmp_path / "g", persons=6)
    keys = make_keys(gallery)
    server = Server(gallery, "--workers", "2").start(timeout_s=180)
    try:
        with server.client() as c:
            for i in range(24):  # new connections: spread over both workers
                with httpx.Client(base_url=server.url, timeout=120) as one:
                    r = one.post("/v1/deduplicate", json=record_json(f"q{i}", i % 6), headers=auth(keys["search"]))
                    assert r.status_code == 200, r.text
            r = c.post("/v1/enrol", json=record_json("NEW-1", 40, impression=0), headers=auth(keys["enrol"]))
            assert r.status_code == 200 and r.json()["enrolled"], r.text
            metrics = c.get("/metrics", headers=auth(keys["metrics"])).text
        searches = sum(float(line.split()[-1]) for line in metrics.splitlines()
                       if line.startswith('biomatch_searches_total{operation="deduplicate"'))
        assert searches == 24, metrics[:2000]  # summed over the workers' files
        assert server.log.read_text().count("Started server process") == 2  # two workers served
    finally:
        server.stop()
    p = subprocess.run([sys.executable, "-m", "biomatch", "audit", "verify", str(gallery)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    entries = (gallery / "service" / "audit.log").read_bytes().count(b"\n")
    assert entries >= 26  # 24 searches, 1 enrolment, the metrics read
