"""Everything that is not a v1 membership call is proxied to the upstream as
it is: any method, path and query; end-to-end headers both ways, hop-by-hop
ones dropped, X-Forwarded-For/-Proto added; bodies streamed both ways
(fixed length and chunked); upstream failures as 502/504. Checked against
the real Glance (image data up and down, compared by sha256) and a scripted
upstream that shows exactly what it was sent."""

import hashlib
import json
import os
import socket
import time

import requests

import harness
from harness import glance_headers, unique


def _up(gateway, path, project, method="GET", **kw):
    h = glance_headers(project)
    h.update(kw.pop("headers", {}))
    kw.setdefault("timeout", 120)
    return requests.request(method, gateway.url + path, headers=h, **kw)


def _new_image(gateway, owner):
    r = _up(gateway, "/v2/images", owner, "POST",
            json={"name": unique("img"), "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_image_list_through_the_gateway(gateway, glance, owner):
    image = glance.create_image(owner)
    r = _up(gateway, "/v2/images?limit=100&owner=%s" % owner, owner)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert [i["id"] for i in r.json()["images"]] == [image]
    assert r.headers["X-Openstack-Request-Id"].startswith("req-")


def test_upload_and_download_fixed_length(gateway, owner):
    image = _new_image(gateway, owner)
    data = os.urandom(24 * 1024 * 1024 + 7)
    r = _up(gateway, "/v2/images/%s/file" % image, owner, "PUT", data=data,
            headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    r = _up(gateway, "/v2/images/%s/file" % image, owner, stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    h = hashlib.sha256()
    for chunk in r.iter_content(1 << 20):
        h.update(chunk)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


def test_upload_chunked(gateway, owner):
    image = _new_image(gateway, owner)
    pieces = [os.urandom(1 << 20) for _ in range(9)] + [b"tail"]
    r = _up(gateway, "/v2/images/%s/file" % image, owner, "PUT", data=iter(pieces),
            headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    r = _up(gateway, "/v2/images/%s/file" % image, owner)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_range_requests_pass_through(gateway, glance, owner):
    image = _new_image(gateway, owner)
    data = os.urandom(3 * 1024 * 1024 + 11)
    r = _up(gateway, "/v2/images/%s/file" % image, owner, "PUT", data=data,
            headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    for spec, lo, hi in (("bytes=100-199", 100, 199), ("bytes=3145700-", 3145700, len(data) - 1)):
        r = _up(gateway, "/v2/images/%s/file" % image, owner, headers={"Range": spec})
        direct = glance.request("GET", "/v2/images/%s/file" % image, owner, headers={"Range": spec})
        assert r.status_code == direct.status_code == 206, (r.status_code, direct.status_code)
        assert r.headers["Content-Range"] == direct.headers["Content-Range"] \
            == "bytes %d-%d/%d" % (lo, hi, len(data))
        assert r.content == data[lo:hi + 1]
    r = _up(gateway, "/v2/images/%s/file" % image, owner, headers={"Range": "bytes=99999999-"})
    assert r.status_code == 416


def test_head_and_errors_pass_through(gateway, owner):
    image = _new_image(gateway, owner)
    r = _up(gateway, "/v2/images/%s" % image, owner, "HEAD")
    direct_status = r.status_code
    assert direct_status in (200, 404, 405), direct_status
    r = _up(gateway, "/v2/images/%s" % unique("nope"), owner, headers={"Accept": "application/json"})
    assert r.status_code == 404
    r = _up(gateway, "/v2/no-such-thing", owner)
    assert r.status_code == 404


def test_keepalive_after_proxied_requests(gateway, owner):
    image = _new_image(gateway, owner)
    with requests.Session() as s:
        for _ in range(5):
            r = s.get(gateway.url + "/v2/images/%s" % image, headers=glance_headers(owner), timeout=30)
            assert r.status_code == 200
            r = s.put(gateway.url + "/v1/images/%s/members/%s" % (image, unique("m")),
                      headers=glance_headers(owner), timeout=30)
            assert r.status_code == 204


def test_headers_both_ways(make_gateway, bad_upstream):
    up = bad_upstream("rules", rules=[
        {"method": "GET", "path": "/v2/x", "status": 200, "body": {"ok": True},
         "headers": {"X-Up": "1", "Connection": "X-Hop", "X-Hop": "h", "Keep-Alive": "timeout=5"}},
    ])
    gw = make_gateway(upstream=up)
    r = requests.get(gw.url + "/v2/x?a=1&b=%2F", timeout=30,
                     headers={"X-Auth-Token": harness.SECRET_TOKEN, "Connection": "keep-alive, X-Drop",
                              "X-Drop": "1", "X-Keep": "2", "X-Forwarded-For": "10.0.0.9",
                              "Accept-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True}
    assert r.headers["X-Up"] == "1"
    assert "X-Hop" not in r.headers and "Keep-Alive" not in r.headers
    seen = dict((k.lower(), v) for k, v in up.request_headers())
    assert up.requests_seen()[-1].endswith("GET /v2/x?a=1&b=%2F")
    assert seen["x-keep"] == "2" and "x-drop" not in seen
    assert seen["x-auth-token"] == harness.SECRET_TOKEN
    assert seen["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["accept-encoding"] == "gzip"
    assert seen["x-openstack-request-id"].startswith("req-")


def test_unreachable_upstream_is_502(make_gateway):
    gw = make_gateway(upstream="https://127.0.0.1:%d" % harness.free_port(), retries=0)
    r = requests.get(gw.url + "/v2/images", timeout=30)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == 502
    # a body being uploaded when the upstream cannot be reached: 502, closed
    r = requests.put(gw.url + "/v2/images/x/file", data=b"x" * (4 << 20), timeout=30)
    assert r.status_code == 502


def test_upstream_timeout_is_504(make_gateway, bad_upstream):
    up = bad_upstream("hang")
    gw = make_gateway(upstream=up, request_timeout=2, retries=0)
    r = requests.get(gw.url + "/v2/images", timeout=30)
    assert r.status_code == 504, r.text


def test_client_that_stops_reading_does_not_grow_the_gateway(gateway, owner, mb_binary):
    # 64 MiB in the image; a client reads nothing for a while: the gateway
    # holds about OUT_HIGH (1 MiB) plus socket buffers, not the image.
    image = _new_image(gateway, owner)
    data = os.urandom(64 * 1024 * 1024)
    assert _up(gateway, "/v2/images/%s/file" % image, owner, "PUT", data=data,
               headers={"Content-Type": "application/octet-stream"}).status_code == 204
    pid = gateway.proc.pid
    s = socket.create_connection(("127.0.0.1", gateway.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    hdrs = "".join("%s: %s\r\n" % kv for kv in glance_headers(owner).items())
    s.sendall(("GET /v2/images/%s/file HTTP/1.1\r\nHost: x\r\n%s\r\n" % (image, hdrs)).encode())
    time.sleep(3)
    rss_kib = int([l for l in open("/proc/%d/status" % pid) if l.startswith("VmRSS")][0].split()[1])
    # now read it all and check it
    h = hashlib.sha256()
    got = b""
    s.settimeout(30)
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    h.update(rest)
    total = len(rest)
    while total < len(data):
        chunk = s.recv(1 << 20)
        assert chunk
        h.update(chunk)
        total += len(chunk)
    s.close()
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    if "san" not in os.path.basename(os.path.dirname(os.path.dirname(mb_binary))):
        assert rss_kib < 40 * 1024, "gateway RSS %d KiB while a client did not read" % rss_kib


def test_version_discovery_lists_v1(gateway, glance):
    for path in ("/", "/versions"):
        direct = requests.get(glance.url + path, timeout=30)
        r = requests.get(gateway.url + path, timeout=30)
        assert r.status_code == direct.status_code, (path, r.status_code, r.text)
        assert r.headers["Content-Type"] == "application/json"
        versions = r.json()["versions"]
        by_id = {v["id"]: v for v in versions}
        for v2 in direct.json()["versions"]:                  # the upstream's, all there
            assert by_id[v2["id"]]["status"] == v2["status"]
            # and their links lead to the gateway, which proxies them
            assert by_id[v2["id"]]["links"] == [{"rel": "self", "href": gateway.url + "/v2/"}]
        for v1 in ("v1.0", "v1.1"):
            assert by_id[v1]["status"] == "DEPRECATED"
            assert by_id[v1]["links"] == [{"rel": "self", "href": gateway.url + "/v1/"}]
        assert [v["id"] for v in versions][-2:] == ["v1.1", "v1.0"]


def test_version_discovery_upstream_down_is_502(make_gateway):
    gw = make_gateway(upstream="https://127.0.0.1:%d" % harness.free_port(), retries=0)
    r = requests.get(gw.url + "/versions", timeout=30)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == 502


def test_two_gib_up_and_down(gateway, owner, mb_binary):
    # SPEC/issue 4: an image of 2 GiB through the gateway both ways, checked
    # by sha256; the gateway's peak RSS is recorded (and bounded: it must
    # not grow with the body).
    size = int(os.environ.get("MB_BIG_BYTES", 2 * 1024 ** 3))
    block = os.urandom(4 * 1024 * 1024)
    want = hashlib.sha256()
    body = harness.RepeatingBody(size, block)
    while True:
        piece = body.read(1 << 22)
        if not piece:
            break
        want.update(piece)
    image = _new_image(gateway, owner)
    pid, peak, stop = gateway.proc.pid, [0], []

    def watch():
        while not stop:
            with open("/proc/%d/status" % pid) as f:
                rss = int([l for l in f if l.startswith("VmRSS")][0].split()[1])
            peak[0] = max(peak[0], rss)
            time.sleep(0.05)

    import threading
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        t0 = time.monotonic()
        r = _up(gateway, "/v2/images/%s/file" % image, owner, "PUT",
                data=harness.RepeatingBody(size, block),
                headers={"Content-Type": "application/octet-stream"}, timeout=900)
        up = time.monotonic() - t0
        assert r.status_code == 204, r.text
        t0 = time.monotonic()
        r = _up(gateway, "/v2/images/%s/file" % image, owner, stream=True, timeout=900)
        assert r.status_code == 200 and r.headers["Content-Length"] == str(size)
        got, n = hashlib.sha256(), 0
        for chunk in r.iter_content(1 << 20):
            got.update(chunk)
            n += len(chunk)
        down = time.monotonic() - t0
    finally:
        stop.append(1)
        watcher.join(5)
        _up(gateway, "/v2/images/%s" % image, owner, "DELETE")
    assert n == size and got.hexdigest() == want.hexdigest()
    print("\n[2 GiB] %d bytes: upload %.1f s (%.0f MiB/s), download %.1f s (%.0f MiB/s), "
          "gateway peak RSS %.1f MiB" % (size, up, size / 2 ** 20 / up, down, size / 2 ** 20 / down,
                                        peak[0] / 1024))
    if "san" not in os.path.basename(os.path.dirname(os.path.dirname(mb_binary))):
        assert peak[0] < 64 * 1024, "gateway peak RSS %d KiB" % peak[0]


def test_upstream_cut_mid_response_cuts_the_client(make_gateway, bad_upstream):
    # the head went out already: the client gets a short body and a closed
    # connection, never a silently shorter "complete" one
    up = bad_upstream("rules", rules=[
        {"method": "GET", "path": "/v2/images/i1/file", "status": 200,
         "body": "x" * 1000, "content_length": 5000, "close": True},
    ])
    gw = make_gateway(upstream=up)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=20)
    s.sendall(b"GET /v2/images/i1/file HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 5000" in head
    assert len(body) == 1000          # and then the gateway closed
    assert gw.alive()
    assert "upstream failed during the response" in gw.stderr_text()


def test_client_gone_mid_upload_and_mid_download(make_gateway, glance, owner):
    # no crash, no leak (the teardown checks the sanitizer report), and the
    # gateway serves the next request
    gw = make_gateway()
    image = _new_image(gw, owner)
    hdrs = "".join("%s: %s\r\n" % kv for kv in glance_headers(owner).items())
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(("PUT /v2/images/%s/file HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/octet-stream\r\n"
               "Content-Length: %d\r\n\r\n" % (image, hdrs, 64 << 20)).encode())
    s.sendall(os.urandom(6 << 20))
    s.close()
    other = _new_image(gw, owner)
    assert _up(gw, "/v2/images/%s/file" % other, owner, "PUT", data=os.urandom(8 << 20),
               headers={"Content-Type": "application/octet-stream"}).status_code == 204
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(("GET /v2/images/%s/file HTTP/1.1\r\nHost: x\r\n%s\r\n" % (other, hdrs)).encode())
    s.recv(1000)
    s.close()
    time.sleep(1)
    r = _up(gw, "/v2/images/%s" % other, owner)
    assert r.status_code == 200 and gw.alive()
