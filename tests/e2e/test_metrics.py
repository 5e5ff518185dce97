"""[admin] listen: GET /metrics (Prometheus text format, parsed strictly
here) and GET /healthcheck. The counters are checked against the requests
the test sends to a fresh gateway."""

import requests

import harness
from harness import unique


def _admin():
    return "%s:%d" % (harness.LOCAL, harness.free_port())


def _one(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0)


def _since(m, m0):
    """Counters and histograms as differences from an earlier reading (the
    harness's start-up health checks are in that one)."""
    return {k: v - m0.get(k, 0) for k, v in m.items()}


def test_counters_match_the_requests_sent(make_gateway, glance, owner):
    gw = make_gateway(workers=2, admin_listen=_admin())
    image = glance.create_image(owner)
    m0 = gw.metrics()
    with requests.Session() as s:
        # 3 single adds, 1 bulk add of 4, 1 list, 1 bad id, 1 proxied call,
        # 1 version document, 2 health checks
        for _ in range(3):
            r = harness.v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("m")), owner,
                           session=s)
            assert r.status_code == 204
        bulk = [unique("b") for _ in range(4)]
        r = harness.v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, bulk[0]), owner,
                       body={"members": [{"member_id": m} for m in bulk]}, session=s)
        assert r.status_code == 204
        assert harness.v1(gw.url, "GET", "/v1/images/%s/members" % image, owner,
                          session=s).status_code == 200
        assert harness.v1(gw.url, "DELETE", "/v1/images/%s/members/a%%2Fb" % image, owner,
                          session=s).status_code == 400
        assert harness.v1(gw.url, "GET", "/v2/images/%s" % image, owner,
                          session=s).status_code == 200
        assert s.get(gw.url + "/versions", timeout=30).status_code in (200, 300)
        for _ in range(2):
            assert s.get(gw.url + "/healthcheck", timeout=30).status_code == 200

    m = _since(gw.metrics(), m0)
    req = "memberbridge_requests_total"
    assert _one(m, req, route="add_member", status="204") == 4
    assert _one(m, req, route="list_members", status="200") == 1
    assert _one(m, req, route="other", status="400") == 1
    assert _one(m, req, route="proxy", status="200") == 1
    assert _one(m, req, route="healthcheck", status="200") == 2
    assert sum(v for (n, l), v in m.items() if n == "memberbridge_requests_total") == 10
    assert sum(v for (n, l), v in m.items() if n == "memberbridge_worker_requests_total") == 10

    # upstream: 3 + 4 POSTs, the list GET, the proxied GET, the versions GET
    up = "memberbridge_upstream_requests_total"
    assert _one(m, up, method="POST", status="200") == 7
    assert _one(m, up, method="GET", status="200") + _one(m, up, method="GET", status="300") == 3
    calls = sum(v for (n, l), v in m.items() if n == up)
    assert calls == 10
    lat = "memberbridge_upstream_request_duration_seconds"
    assert _one(m, lat + "_count") == calls
    assert _one(m, lat + "_bucket", le="+Inf") == calls
    assert 0 < _one(m, lat + "_sum") < 60

    # fan-out: four adds, of 1, 1, 1 and 4 members
    fan = "memberbridge_fanout_members"
    assert _one(m, fan + "_count") == 4
    assert _one(m, fan + "_sum") == 7
    assert _one(m, fan + "_bucket", le="1") == 3
    assert _one(m, fan + "_bucket", le="5") == 4

    m = gw.metrics()
    assert _one(m, "memberbridge_requests_in_flight") == 0
    harness.wait_until(lambda: _one(gw.metrics(), "memberbridge_open_connections") == 0, 10,
                       what="open connections back to 0")
    assert _one(m, "memberbridge_build_info", version=_version(gw)) == 1


def _version(gw):
    import subprocess
    out = subprocess.run([gw.binary, "--version"], capture_output=True, text=True).stdout
    return out.split()[-1]


def test_gauges_while_a_request_waits(make_gateway, bad_upstream, owner):
    up = bad_upstream("rules", rules=[
        {"method": "GET", "path": "/v2/images/[^/]+/members$", "status": 200, "delay": 3,
         "body": {"members": []}},
    ])
    gw = make_gateway(upstream=up, admin_listen=_admin())
    import threading
    t = threading.Thread(target=harness.v1,
                         args=(gw.url, "GET", "/v1/images/slow/members", owner))
    t.start()
    harness.wait_until(lambda: up.requests_seen(), 10)
    m = gw.metrics()
    assert _one(m, "memberbridge_requests_in_flight") == 1
    assert _one(m, "memberbridge_open_connections") >= 1
    t.join(30)
    m = gw.metrics()
    assert _one(m, "memberbridge_requests_in_flight") == 0
    assert _one(m, "memberbridge_requests_total", route="list_members", status="200") == 1


def test_upstream_failures_are_counted(make_gateway, owner):
    gw = make_gateway(upstream="https://127.0.0.1:%d" % harness.free_port(), retries=0,
                      admin_listen=_admin())
    r = harness.v1(gw.url, "GET", "/v1/images/x/members", owner)
    assert r.status_code == 502
    m = gw.metrics()
    assert _one(m, "memberbridge_upstream_requests_total", method="GET", status="0") == 1
    assert _one(m, "memberbridge_requests_total", route="list_members", status="502") == 1


def test_admin_endpoint_paths_and_methods(make_gateway):
    gw = make_gateway(admin_listen=_admin())
    m0 = gw.metrics()
    r = requests.get(gw.admin_url + "/healthcheck", timeout=10)
    assert r.status_code == 200 and r.text == "OK"
    r = requests.get(gw.admin_url + "/metrics", timeout=10)
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    harness.parse_prometheus(r.text)
    assert requests.head(gw.admin_url + "/metrics", timeout=10).status_code == 200
    assert requests.get(gw.admin_url + "/v1/images/x/members", timeout=10).status_code == 404
    r = requests.post(gw.admin_url + "/metrics", data=b"x", timeout=10)
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    # the admin endpoint's own requests are not counted as gateway requests
    m = _since(gw.metrics(), m0)
    assert sum(v for (n, l), v in m.items() if n == "memberbridge_requests_total") == 0


def test_admin_listen_in_use_stops_start_up(make_gateway):
    import socket
    with socket.socket() as taken:
        taken.bind((harness.LOCAL, 0))
        taken.listen(1)
        addr = "%s:%d" % taken.getsockname()
        gw = make_gateway(start=False, admin_listen=addr)
        try:
            gw.start(timeout=5)
            started = True
        except harness.HarnessError:
            started = False
        assert not started
        assert "cannot listen on [admin] listen %s" % addr in gw.stderr_text()


def test_admin_connections_open_at_stop(make_gateway):
    # a scraper's keep-alive connection and a request half sent: closed at
    # exit, no leak (the sanitizer build's LeakSanitizer), exit status 0
    import socket
    gw = make_gateway(admin_listen=_admin())
    s = requests.Session()
    assert s.get(gw.admin_url + "/metrics", timeout=10).status_code == 200
    host, port = gw.settings["admin_listen"].rsplit(":", 1)
    half = socket.create_connection((host, int(port)), timeout=10)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    rc, in_time = gw.stop(timeout=15)
    assert in_time and rc == 0
    half.close()
    s.close()
