"""Upstream failures: certificate problems, nothing listening, timeouts, 5xx
and garbage (SPEC section 2)."""

import re
import time

import harness
from harness import free_port, unique, v1


def add_call(gw, owner, image, members=1):
    path_member = unique("p")
    listed = [unique("m") for _ in range(members - 1)]
    body = {"members": [{"member_id": x} for x in listed]} if listed else None
    return v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, path_member), owner,
              body=body), [path_member, *listed]


def assert_failed_add(r, code, members):
    assert r.status_code == code, r.text
    body = r.json()
    assert body["error"]["code"] == code
    results = body["results"]
    assert sorted(e["member_id"] for e in results) == sorted(members)
    assert not any(e["done"] for e in results)


def test_untrusted_ca_is_502(make_gateway, pki, tls, glance, owner, shared_image):
    gw = make_gateway(upstream=tls, ca_file=str(pki.other_ca_cert))
    r, members = add_call(gw, owner, shared_image, members=3)
    assert_failed_add(r, 502, members)
    assert glance.v2_members(shared_image, owner) == set()
    assert re.search(r"certificate", gw.stderr_text(), re.I), gw.describe()


def test_wrong_host_certificate_is_502(make_gateway, tls, glance, owner, shared_image):
    gw = make_gateway(upstream=tls.wrong_url)
    r, members = add_call(gw, owner, shared_image)
    assert_failed_add(r, 502, members)
    assert glance.v2_members(shared_image, owner) == set()
    assert re.search(r"certificate|host ?name|subject", gw.stderr_text(), re.I), gw.describe()


def test_certificate_failure_is_not_retried(make_gateway, pki, bad_upstream, owner):
    b = bad_upstream("echo")  # TLS with the good cert, but the gateway trusts another CA
    gw = make_gateway(upstream=b, ca_file=str(pki.other_ca_cert), retries=2)
    r, members = add_call(gw, owner, "img-1")
    assert_failed_add(r, 502, members)
    assert b.connections() == 1, "a certificate failure was retried"
    assert not b.requests_seen()


def test_nothing_listening_is_502(make_gateway, owner):
    gw = make_gateway(upstream="https://127.0.0.1:%d" % free_port(), retries=1)
    r, members = add_call(gw, owner, "img-1")
    assert_failed_add(r, 502, members)


def test_list_with_nothing_listening_is_502(make_gateway, owner):
    gw = make_gateway(upstream="https://127.0.0.1:%d" % free_port(), retries=0)
    r = v1(gw.url, "GET", "/v1/images/img-1/members", owner)
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == 502


def test_hang_is_504_within_request_timeout(make_gateway, bad_upstream, owner):
    b = bad_upstream("hang")
    gw = make_gateway(upstream=b, request_timeout=2, retries=2)
    t0 = time.monotonic()
    r, members = add_call(gw, owner, "img-1")
    elapsed = time.monotonic() - t0
    assert_failed_add(r, 504, members)
    assert elapsed < 2 + 5, "504 took %.1fs with request_timeout=2" % elapsed
    assert len(b.requests_seen()) == 1, "a timed-out request was retried: %r" % b.requests_seen()


def test_closed_connection_is_retried_then_502(make_gateway, bad_upstream, owner):
    b = bad_upstream("close", tls=False)
    gw = make_gateway(upstream=b, retries=2, ca_file="")
    r, members = add_call(gw, owner, "img-1")
    assert_failed_add(r, 502, members)
    harness.wait_until(lambda: b.connections() >= 3, 5, what="3 connection attempts")
    assert b.connections() == 3, "retries=2 means 3 attempts, saw %d" % b.connections()


def test_upstream_5xx_is_502_not_retried(make_gateway, bad_upstream, owner):
    b = bad_upstream("error500")
    gw = make_gateway(upstream=b, retries=2)
    r, members = add_call(gw, owner, "img-1")
    assert_failed_add(r, 502, members)
    assert len(b.requests_seen()) == 1, b.requests_seen()


def test_upstream_garbage_is_502(make_gateway, bad_upstream, owner):
    b = bad_upstream("garbage")
    gw = make_gateway(upstream=b, retries=0)
    r, members = add_call(gw, owner, "img-1")
    assert_failed_add(r, 502, members)
