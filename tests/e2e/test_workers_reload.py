"""Worker threads, SIGHUP and SIGTERM under load.

[server] workers = N runs N event-loop threads, each with its own listening
socket (SO_REUSEPORT) and upstream client; the per-worker request counters
of /metrics show which thread served what. SIGHUP reads the configuration
file again: new requests use the new settings, requests in flight finish
with the old ones, a file that does not load changes nothing. SIGTERM
finishes what is in flight."""

import os
import signal
import socket
import threading
import time
import uuid

import requests

import harness
from harness import unique


def _admin():
    return "%s:%d" % (harness.LOCAL, harness.free_port())


def _members(gw, image, project, session=None, timeout=30):
    return harness.v1(gw.url, "GET", "/v1/images/%s/members" % image, project,
                      session=session, timeout=timeout)


def _image_with_id(glance, owner, image_id, member):
    """An image with a given id in this Glance, shared with member."""
    r = glance.request("POST", "/v2/images", owner,
                       json={"id": image_id, "name": unique("img"), "visibility": "shared",
                             "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    glance.add_v2_member(image_id, owner, member)


def test_requests_are_served_on_every_worker(make_gateway):
    gw = make_gateway(workers=2, admin_listen=_admin())
    m0 = gw.metrics()    # the harness's start-up health checks are in here
    for _ in range(60):   # a new connection each time: the kernel picks the worker
        r = requests.get(gw.url + "/healthcheck", headers={"Connection": "close"}, timeout=10)
        assert r.status_code == 200
    m = gw.metrics()
    assert m[("memberbridge_workers", frozenset())] == 2
    key = "memberbridge_worker_requests_total"
    per_worker = {w: m.get((key, frozenset({("worker", w)})), 0)
                  - m0.get((key, frozenset({("worker", w)})), 0) for w in ("0", "1")}
    assert per_worker["0"] + per_worker["1"] == 60, per_worker
    assert per_worker["0"] > 0 and per_worker["1"] > 0, per_worker
    assert "2 worker threads" in gw.stderr_text()


def test_workers_default_to_the_number_of_cores(make_gateway):
    gw = make_gateway(admin_listen=_admin())      # workers = 0
    cores = os.cpu_count()
    assert gw.metrics()[("memberbridge_workers", frozenset())] == min(cores, 256)


def test_sighup_switches_the_upstream_under_load(make_gateway, glance, glance_quota, tls,
                                                 tls_quota, owner):
    # The same image id in two Glances, shared with a different member in
    # each: the member list says which one answered.
    image = str(uuid.uuid4())
    member_a, member_b = unique("in-a"), unique("in-b")
    _image_with_id(glance, owner, image, member_a)
    _image_with_id(glance_quota, owner, image, member_b)
    gw = make_gateway(upstream=tls, workers=2)

    results, stop = [], threading.Event()

    def load():
        with requests.Session() as s:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = _members(gw, image, owner, session=s)
                    ids = {m["member_id"] for m in r.json().get("members", [])} \
                        if r.status_code == 200 else None
                    results.append((t0, r.status_code, ids))
                except requests.RequestException as e:
                    results.append((t0, repr(e), None))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert gw.reload({"url": tls_quota.url})
    switched = time.monotonic()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(30)

    assert results, "no request was sent"
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:5]
    before = [ids for t0, _, ids in results if t0 < switched - 1.0]
    after = [ids for t0, _, ids in results if t0 > switched + 0.5]
    assert before and all(ids == {member_a} for ids in before)
    assert after and all(ids == {member_b} for ids in after)


def test_request_in_flight_finishes_on_the_old_upstream(make_gateway, bad_upstream, tls, glance,
                                                       owner, shared_image):
    slow_member = unique("slow")
    up = bad_upstream("rules", rules=[
        {"method": "GET", "path": "/v2/images/[^/]+/members$", "status": 200, "delay": 3,
         "body": {"members": [{"member_id": slow_member, "image_id": "x", "status": "pending"}]}},
    ])
    glance.add_v2_member(shared_image, owner, "fresh-member")
    gw = make_gateway(upstream=up, workers=2)
    out = {}

    def slow_call():
        out["r"] = _members(gw, shared_image, owner)

    t = threading.Thread(target=slow_call)
    t.start()
    harness.wait_until(lambda: up.requests_seen(), 10, what="the slow request upstream")
    assert gw.reload({"url": tls.url})
    fresh = _members(gw, shared_image, owner)        # a new request: the new upstream
    assert fresh.status_code == 200
    assert {m["member_id"] for m in fresh.json()["members"]} == {"fresh-member"}
    t.join(30)
    assert out["r"].status_code == 200                # the old one: the old upstream
    assert [m["member_id"] for m in out["r"].json()["members"]] == [slow_member]


def test_sighup_with_a_bad_file_changes_nothing(make_gateway, owner, shared_image, glance):
    gw = make_gateway(workers=2, admin_listen=_admin())
    glance.add_v2_member(shared_image, owner, "kept")
    good = gw.conf_path.read_text()

    gw.conf_path.write_text(good + "\n[members]\nconcurrency = many\n")
    os.kill(gw.proc.pid, signal.SIGHUP)
    harness.wait_until(lambda: "the running configuration stays" in gw.stderr_text(), 10)
    assert "%s:" % gw.conf_path in gw.stderr_text()           # FILE:LINE named
    r = _members(gw, shared_image, owner)
    assert r.status_code == 200 and {m["member_id"] for m in r.json()["members"]} == {"kept"}

    # what only a restart can change is refused too, all of it
    assert not gw.reload({"listen": "127.0.0.1:%d" % harness.free_port(), "concurrency": 3})
    assert "[server] listen cannot change without a restart" in gw.stderr_text()
    assert not gw.reload({"listen": "%s:%d" % (harness.LOCAL, gw.port), "workers": 3})
    assert "[server] workers cannot change without a restart" in gw.stderr_text()

    # a certificate that does not load
    assert not gw.reload({"workers": 2, "tls_cert_file": "/nonexistent/cert.pem",
                          "tls_key_file": "/nonexistent/key.pem"})
    assert "/nonexistent/cert.pem" in gw.stderr_text()
    r = requests.get(gw.url.replace("https:", "http:") + "/healthcheck", timeout=10)
    assert r.status_code == 200                                # still plain HTTP

    m = gw.metrics()
    assert m[("memberbridge_config_reloads_total", frozenset({("result", "failed")}))] == 4
    assert m[("memberbridge_config_reloads_total", frozenset({("result", "ok")}))] == 0
    gw.settings.update(tls_cert_file=None, tls_key_file=None)
    assert gw.reload()
    assert gw.metrics()[("memberbridge_config_reloads_total", frozenset({("result", "ok")}))] == 1


def test_sighup_reopens_the_access_log(make_gateway):
    gw = make_gateway(workers=2)
    requests.get(gw.url + "/healthcheck", timeout=10)
    log = gw.access_log_path
    harness.wait_until(lambda: "/healthcheck" in harness.read_text(log), 5)
    rotated = log.with_name(log.name + ".1")
    os.rename(log, rotated)                             # as logrotate does
    lines_before = harness.read_text(rotated).count("\n")
    assert gw.reload()
    requests.get(gw.url + "/healthcheck", timeout=10)
    harness.wait_until(lambda: log.exists() and "/healthcheck" in harness.read_text(log), 5,
                       what="an access line in the new file")
    assert harness.read_text(log).count("\n") == 1
    assert harness.read_text(rotated).count("\n") == lines_before


def test_sighup_changes_the_log_level(make_gateway, owner, shared_image):
    gw = make_gateway(workers=2, level="info")
    _members(gw, shared_image, owner)
    assert "upstream: GET" not in gw.stderr_text()   # debug lines are off
    assert gw.reload({"level": "debug"})
    _members(gw, shared_image, owner)
    harness.wait_until(lambda: "upstream: GET" in gw.stderr_text(), 5)


def test_sigterm_during_load_finishes_requests_in_flight(make_gateway, bad_upstream, owner):
    up = bad_upstream("rules", rules=[
        {"method": "GET", "path": "/v2/images/[^/]+/members$", "status": 200, "delay": 2,
         "body": {"members": []}},
    ])
    gw = make_gateway(upstream=up, workers=2)
    results = []

    def call(i):
        try:
            r = _members(gw, "img-%d" % i, owner)
            results.append(r.status_code)
        except requests.RequestException as e:
            results.append(repr(e))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    harness.wait_until(lambda: len(up.requests_seen()) == 8, 10, what="8 requests upstream")
    gw.proc.popen.send_signal(signal.SIGTERM)
    # no longer accepting: a new connection is refused soon after
    def refused():
        try:
            socket.create_connection((harness.LOCAL, gw.port), timeout=1).close()
            return False
        except OSError:
            return True
    harness.wait_until(refused, 5, what="the listener closed")
    for t in threads:
        t.join(30)
    assert results == [200] * 8, results
    rc, in_time = gw.stop(timeout=15)
    assert in_time and rc == 0
    assert "all requests finished; exiting" in gw.stderr_text()


def test_workers_share_no_request_state(make_gateway, glance, owner):
    # many bulk adds at once over both workers: every one lands exactly once
    gw = make_gateway(workers=2)
    images = [glance.create_image(owner) for _ in range(6)]
    members = {img: [unique("m") for _ in range(10)] for img in images}
    out = []

    def add(img):
        ms = members[img]
        r = harness.v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (img, ms[0]), owner,
                       body={"members": [{"member_id": m} for m in ms]},
                       headers={"Connection": "close"})
        out.append(r.status_code)

    threads = [threading.Thread(target=add, args=(i,)) for i in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == [204] * 6
    for img in images:
        assert glance.v2_members(img, owner) == set(members[img])


def test_sighup_while_starting_does_not_kill_it(make_gateway):
    gw = make_gateway(start=False, workers=2)
    gw.write_conf()
    gw.proc = harness.Proc(gw.name, [gw.binary, "-c", gw.conf_path], gw.log_path)
    # (a signal before main() runs at all would still end it: the loader's
    # few milliseconds are not covered) -- wait until SIGHUP is no longer at
    # its default action: ignored while starting, or caught once running
    def hup_handled():
        with open("/proc/%d/status" % gw.proc.pid) as f:
            masks = dict(ln.split()[:2] for ln in f if ln.startswith(("SigIgn:", "SigCgt:")))
        bit = 1 << (signal.SIGHUP - 1)
        return (int(masks["SigIgn:"], 16) | int(masks["SigCgt:"], 16)) & bit
    harness.wait_until(hup_handled, 10, interval=0.001, what="SIGHUP ignored or caught")
    for _ in range(5):                      # systemctl reload right after start
        os.kill(gw.proc.pid, signal.SIGHUP)
        time.sleep(0.01)
    harness.wait_http_ok(gw.url + "/healthcheck", gw.proc, 20)
    assert gw.alive()
