"""The process: command line, configuration errors, SIGTERM with a request in
flight, clients that go away (SPEC sections 2, 4 and 5)."""

import socket
import subprocess
import threading

import requests

import harness
from harness import glance_headers, unique, v1


def run(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL)


def test_version_and_help(mb_binary):
    r = run(mb_binary, "--version")
    assert r.returncode == 0, r.stderr
    assert "memberbridge" in r.stdout + r.stderr
    r = run(mb_binary, "--help")
    assert r.returncode == 0, r.stderr
    assert "-c" in r.stdout + r.stderr


def test_check_config(mb_binary, tmp_path, tls, pki):
    gw = harness.Gateway(mb_binary, tls.url, pki.ca_cert, workdir=tmp_path)
    gw.write_conf()
    r = run(mb_binary, "--check-config", "-c", str(gw.conf_path))
    assert r.returncode == 0, r.stdout + r.stderr


BAD_CONFIGS = {
    "unknown-key": ("[server]\nlisten = 127.0.0.1:9393\nbogus = 1\n", 3),
    "unknown-section": ("[upstream]\nurl = https://127.0.0.1:1\n[nonsense]\n", 3),
    "bad-value": ("[upstream]\nurl = https://127.0.0.1:1\n[members]\ncan_share = maybe\n", 4),
    "bad-number": ("[upstream]\nurl = https://127.0.0.1:1\nretries = lots\n", 3),
}


def test_bad_config_is_refused_with_file_and_line(mb_binary, tmp_path):
    for name, (text, line) in BAD_CONFIGS.items():
        conf = tmp_path / ("%s.conf" % name)
        conf.write_text(text)
        r = run(mb_binary, "--check-config", "-c", str(conf))
        assert r.returncode == 1, (name, r.returncode, r.stderr)
        assert "%s:%d:" % (conf, line) in r.stdout + r.stderr, (name, r.stderr)
        r = run(mb_binary, "-c", str(conf))  # start-up stops too
        assert r.returncode != 0, name
        assert "%s:%d:" % (conf, line) in r.stdout + r.stderr, (name, r.stderr)


def test_sigterm_finishes_request_in_flight(make_gateway, bad_upstream, owner):
    b = bad_upstream("slow", delay=2)  # answers 200 after 2 s
    gw = make_gateway(upstream=b, request_timeout=20)
    result = {}

    def call():
        result["r"] = v1(gw.url, "PUT", "/v1/images/img-1/members/%s" % unique("m"), owner)

    t = threading.Thread(target=call)
    t.start()
    harness.wait_until(lambda: b.requests_seen(), 10, what="the upstream call")
    rc, in_time = gw.stop(timeout=10)
    t.join(15)
    assert in_time and rc == 0, (rc, gw.describe())
    assert "r" in result, "the in-flight request got no reply"
    assert result["r"].status_code == 204, result["r"].text


def test_clients_that_go_away(make_gateway, glance, owner, shared_image):
    gw = make_gateway()
    body = ('{"members": [%s]}' % ",".join('{"member_id": "%s"}' % unique("m")
                                          for _ in range(100))).encode()
    head = ("PUT /v1/images/%s/members/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            % (shared_image, unique("p")))
    head += "".join("%s: %s\r\n" % kv for kv in glance_headers(owner).items())
    head += "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    # 1. whole request, then gone before the 100 upstream calls finish
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(head.encode() + body)
    s.close()
    # 2. half the body, then gone
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(head.encode() + body[:len(body) // 2])
    s.close()
    # 3. half the headers, then gone
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(head.encode()[:40])
    s.close()
    # 4. gone with an RST in the middle of the body
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.sendall(head.encode() + body[:100])
    s.close()
    # Still serving; teardown checks the exit status and sanitizer reports.
    assert requests.get(gw.url + "/healthcheck", timeout=10).status_code == 200
    m = unique("after")
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert r.status_code == 204, r.text
    assert m in glance.v2_members(shared_image, owner)


def test_client_gone_while_upstream_hangs(make_gateway, bad_upstream, owner):
    b = bad_upstream("hang")
    gw = make_gateway(upstream=b, request_timeout=2)
    s = socket.create_connection(("127.0.0.1", gw.port))
    req = ("PUT /v1/images/img-1/members/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % unique("m"))
    req += "".join("%s: %s\r\n" % kv for kv in glance_headers(owner).items())
    req += "Content-Length: 0\r\n\r\n"
    s.sendall(req.encode())
    harness.wait_until(lambda: b.requests_seen(), 10, what="the upstream call")
    s.close()
    assert requests.get(gw.url + "/healthcheck", timeout=10).status_code == 200
    # Stopping now must wait for (or cancel) the hanging call, then exit 0
    # without leaks: checked at teardown.


def test_grace_period_over_answers_503(make_gateway, bad_upstream, owner):
    """SIGTERM while the upstream never answers: once the grace period
    (request_timeout + connect_timeout + 5 s) is over, the waiting client
    gets a 503 that says to send the request again, not a dropped
    connection, and the process still exits 0."""
    b = bad_upstream("hang")
    gw = make_gateway(upstream=b, request_timeout=2, connect_timeout=1, concurrency=1, retries=0)
    members = [{"member_id": unique("m")} for _ in range(8)]   # 8 calls x 2 s, one at a time
    result = {}

    def call():
        result["r"] = v1(gw.url, "PUT", "/v1/images/img-1/members/%s" % unique("p"), owner,
                         body={"members": members}, timeout=60)

    t = threading.Thread(target=call)
    t.start()
    harness.wait_until(lambda: b.requests_seen(), 10, what="the upstream call")
    rc, in_time = gw.stop(timeout=20)
    t.join(20)
    assert in_time and rc == 0, (rc, gw.describe())
    assert "r" in result, "the waiting request got no reply"
    r = result["r"]
    assert r.status_code == 503, r.text
    assert "send the request again" in r.json()["error"]["message"]
    assert "grace period" in gw.log_text()


def test_listen_on_ipv6_loopback(make_gateway, glance, owner, shared_image):
    """[server] listen takes IPv6 as [::1]:port (SPEC section 4)."""
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
        probe.close()
    except OSError:
        import pytest
        pytest.skip("no IPv6 loopback on this machine")
    gw = make_gateway(listen="[::1]:%d" % port, start=False)
    gw.write_conf()
    gw.proc = harness.Proc(gw.name, [gw.binary, "-c", gw.conf_path], gw.log_path)
    url = "http://[::1]:%d" % port
    harness.wait_http_ok(url + "/healthcheck", gw.proc, 20, what="gateway on [::1]")
    m = unique("m")
    r = v1(url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert r.status_code == 204, r.text
    assert m in glance.v2_members(shared_image, owner)
    assert "client=::1:" in gw.access_log_text()
