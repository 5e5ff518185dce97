"""The HTTPS listener: [server] tls_cert_file and tls_key_file, TLS 1.2 at
least, with a throwaway CA made at test time. A certificate or key that
does not load stops start-up (and --check-config) with a clear error; SIGHUP
reads them again."""

import shutil
import socket
import ssl
import subprocess

import pytest
import requests

import harness
from harness import unique


def _https_gateway(make_gateway, pki, upstream=None, **kw):
    return make_gateway(upstream=upstream, tls_cert_file=str(pki.server_cert),
                        tls_key_file=str(pki.server_key), https_ca=pki.ca_cert, **kw)


def _handshake(port, ca, minimum=None, maximum=None, seclevel0=False):
    """Connects and handshakes; returns (TLS version, peer certificate dict)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    if seclevel0:   # so that the client itself offers TLS 1.0/1.1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    with socket.create_connection((harness.LOCAL, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.version(), s.getpeercert()


def test_v1_calls_over_https(make_gateway, pki, glance, owner, shared_image):
    gw = _https_gateway(make_gateway, pki)
    assert gw.url.startswith("https://")
    members = [unique("m") for _ in range(5)]
    r = harness.v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, members[0]), owner,
                   body={"members": [{"member_id": m} for m in members]})
    # (harness.v1 uses requests' default verification: give it the test CA)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == set(members)


@pytest.fixture(autouse=True)
def _trust_test_ca(monkeypatch, pki):
    # requests (and harness.v1) verify against REQUESTS_CA_BUNDLE
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_cert))


def test_proxied_requests_say_https(make_gateway, pki, bad_upstream):
    up = bad_upstream("echo")
    gw = _https_gateway(make_gateway, pki, upstream=up)
    r = requests.get(gw.url + "/v2/anything", timeout=30)
    assert r.status_code == 200
    seen = {k.lower(): v for k, v in r.json()["headers"]}
    assert seen["x-forwarded-proto"] == "https"


def test_version_discovery_links_are_https(make_gateway, pki):
    gw = _https_gateway(make_gateway, pki)
    r = requests.get(gw.url + "/versions", timeout=30)
    assert r.status_code in (200, 300)
    hrefs = [link["href"] for v in r.json()["versions"] for link in v.get("links", [])]
    assert hrefs and all(h.startswith("https://127.0.0.1:%d/" % gw.port) for h in hrefs), hrefs


def test_tls_1_2_and_1_3_accepted_older_refused(make_gateway, pki):
    gw = _https_gateway(make_gateway, pki)
    v, _ = _handshake(gw.port, pki.ca_cert, maximum=ssl.TLSVersion.TLSv1_2)
    assert v == "TLSv1.2"
    v, _ = _handshake(gw.port, pki.ca_cert, minimum=ssl.TLSVersion.TLSv1_3)
    assert v == "TLSv1.3"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError) as e:
            _handshake(gw.port, pki.ca_cert, minimum=old, maximum=old, seclevel0=True)
        # refused by the gateway (an alert), not by this client
        assert "alert protocol version" in str(e.value).lower() \
            or "unsupported protocol" in str(e.value).lower(), str(e.value)
    assert gw.alive()


def test_plain_http_to_the_https_port_gets_no_answer_and_no_hang(make_gateway, pki):
    gw = _https_gateway(make_gateway, pki)
    with socket.create_connection((harness.LOCAL, gw.port), timeout=10) as s:
        s.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(4096)     # not a TLS handshake: closed (or reset)
        except ConnectionResetError:
            data = b""
    assert not data.startswith(b"HTTP/1.1 200")
    assert requests.get(gw.url + "/healthcheck", timeout=10).status_code == 200


def test_body_too_large_answered_over_tls(make_gateway, pki, owner):
    # a reply before the body was read is a lingering close: over TLS too
    gw = _https_gateway(make_gateway, pki, max_body_bytes=1024)
    r = harness.v1(gw.url, "PUT", "/v1/images/%s/members/%s" % ("img", "m"), owner,
                   data=b'{"members": [' + b'{"member_id": "x"},' * 20000 + b'{"member_id": "y"}]}')
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["error"]["message"]


def _expired_certificate(key_path, cert_path):
    """A self-signed certificate for key_path valid only in 2020."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2020, 1, 2))
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize("case", ["missing", "garbage", "wrong_key", "swapped", "expired"])
def test_bad_certificate_or_key_refuses_to_start(make_gateway, pki, case):
    d = harness.make_workdir("badcert-" + case)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    expect = str(cert)
    if case == "missing":
        cert.unlink()
        expect = "%s" % cert
    elif case == "garbage":
        key.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
        expect = str(key)
    elif case == "wrong_key":
        shutil.copy(pki.wrong_key, key)
        expect = "does not match"
    elif case == "swapped":
        shutil.copy(pki.server_key, cert)
        shutil.copy(pki.server_cert, key)
    elif case == "expired":
        _expired_certificate(key, cert)
        expect = "expired"
    gw = make_gateway(start=False, tls_cert_file=str(cert), tls_key_file=str(key))
    gw.write_conf()
    r = subprocess.run([gw.binary, "-c", str(gw.conf_path), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert expect in r.stderr, r.stderr
    r = subprocess.run([gw.binary, "-c", str(gw.conf_path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert expect in r.stderr, r.stderr
    assert "ready" not in r.stderr


def test_sighup_reads_the_certificate_again(make_gateway, pki):
    d = harness.make_workdir("rotating-cert")
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    gw = make_gateway(tls_cert_file=str(cert), tls_key_file=str(key), https_ca=pki.ca_cert,
                      workers=2)
    _, peer = _handshake(gw.port, pki.ca_cert)
    assert dict(x[0] for x in peer["subject"])["commonName"] == "127.0.0.1"

    with requests.Session() as kept:                  # a connection made before
        assert kept.get(gw.url + "/healthcheck", timeout=10).status_code == 200
        shutil.copy(pki.wrong_cert, cert)             # renewed: another name
        shutil.copy(pki.wrong_key, key)
        assert gw.reload()
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.check_hostname = False
        for _ in range(4):                            # whichever worker answers
            with socket.create_connection((harness.LOCAL, gw.port), timeout=10) as raw:
                with ctx.wrap_socket(raw) as s:
                    cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
            assert cn == "wrong.example"
        assert kept.get(gw.url + "/healthcheck", timeout=10).status_code == 200

    # a key that no longer matches: refused, the last good pair stays
    shutil.copy(pki.server_key, key)
    assert not gw.reload()
    assert "does not match" in gw.stderr_text()
