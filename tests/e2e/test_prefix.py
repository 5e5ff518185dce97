"""[upstream] url with a path prefix (SPEC: "http:// or https://, optional path
prefix"), as devstack serves Glance under https://host/image.

nginx (TlsTerminator) serves Glance at https://127.0.0.1:port/image/ too,
stripping "/image" before Glance sees the request. Every v1 route goes
through a gateway whose upstream url is that prefixed url, with and without
a trailing slash, and is checked directly in Glance v2; nginx's access log
shows that each upstream call went to /image/v2/... (and none escaped the
prefix).

Glance writes its "next" links without any prefix ("/v2/images?..."): it
does not know it is served below /image. The gateway appends them to the
configured url, so they come out as https://host/image/v2/images?... -- the
right place.
"""

import re
import uuid

import pytest
import requests

import harness
from harness import unique, v1

PAGE = 20  # the test Glance's api_limit_max (harness.GLANCE_CONF)


@pytest.fixture(params=["no-slash", "trailing-slash"])
def prefix_upstream(request, tls):
    url = tls.prefix_url
    assert url.endswith("/image")
    return url if request.param == "no-slash" else url + "/"


@pytest.fixture
def pgw(make_gateway, prefix_upstream):
    """A gateway whose [upstream] url is https://127.0.0.1:port/image[/]."""
    return make_gateway(upstream=prefix_upstream)


def call(gw, method, path, project, body=None):
    """v1() with a fresh request id; returns (response, request id)."""
    rid = "req-%s" % uuid.uuid4()
    r = v1(gw.url, method, path, project, body=body, headers={"X-Openstack-Request-Id": rid})
    assert r.headers.get("X-Openstack-Request-Id") == rid, r.headers
    return r, rid


_LINE = re.compile(r'^\S+ "(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/1\.1" (?P<status>\d{3}) ')


def upstream_calls(tls, rid, count):
    """[(method, uri as the gateway sent it, nginx status)] of the upstream
    calls carrying request id rid; waits until nginx logged count of them."""
    sent = " reqid=%s " % rid

    def lines():
        found = [line for line in tls.access_log_text().splitlines() if sent in line]
        return found if len(found) >= count else None

    found = harness.wait_until(lines, 5, what="%d upstream calls with %s in nginx's log"
                               % (count, rid))
    out = []
    for line in found:
        m = _LINE.match(line)
        assert m, line
        out.append((m["method"], m["uri"], int(m["status"])))
    return out


def assert_all_prefixed(calls):
    for method, uri, status in calls:
        assert uri.startswith("/image/v2/images"), (method, uri, status)
        assert "//" not in uri, (method, uri, status)


# --------------------------------------------------------------------------

def test_nginx_serves_glance_below_the_prefix(tls, pki, glance, owner):
    """The harness itself: /image/v2/... reaches Glance as /v2/...."""
    image = glance.create_image(owner)
    r = requests.get(tls.prefix_url + "/v2/images/%s" % image,
                     headers=harness.glance_headers(owner), verify=str(pki.ca_cert), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == image


def test_add_one(pgw, tls, glance, owner, shared_image):
    m = unique("m")
    r, rid = call(pgw, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m}
    calls = upstream_calls(tls, rid, 1)
    assert_all_prefixed(calls)
    assert ("POST", "/image/v2/images/%s/members" % shared_image, 200) in calls, calls


def test_bulk_add_5(pgw, tls, glance, owner, shared_image):
    m = unique("path")
    listed = [unique("m") for _ in range(5)]
    body = {"members": [{"member_id": x, "can_share": False} for x in listed]}
    r, rid = call(pgw, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner, body=body)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m, *listed}
    calls = upstream_calls(tls, rid, 6)
    assert_all_prefixed(calls)
    posts = [c for c in calls if c[0] == "POST"]
    assert posts == [("POST", "/image/v2/images/%s/members" % shared_image, 200)] * 6, calls


def test_replace(pgw, tls, glance, owner, shared_image):
    a, b, c, d, e = (unique("m") for _ in range(5))
    for x in (a, b, c):
        glance.add_v2_member(shared_image, owner, x)
    body = {"memberships": [{"member_id": b}, {"member_id": c, "can_share": False},
                            {"member_id": d}, {"member_id": e, "can_share": False}]}
    r, rid = call(pgw, "PUT", "/v1/images/%s/members" % shared_image, owner, body=body)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {b, c, d, e}
    # list, 2 adds, 1 removal
    calls = upstream_calls(tls, rid, 4)
    assert_all_prefixed(calls)
    assert ("GET", "/image/v2/images/%s/members" % shared_image, 200) in calls, calls
    assert ("DELETE", "/image/v2/images/%s/members/%s" % (shared_image, a), 204) in calls, calls


def test_list(pgw, tls, glance, owner, shared_image):
    ms = [unique("m") for _ in range(3)]
    for x in ms:
        glance.add_v2_member(shared_image, owner, x)
    r, rid = call(pgw, "GET", "/v1/images/%s/members" % shared_image, owner)
    assert r.status_code == 200, r.text
    got = r.json()
    assert sorted(e["member_id"] for e in got["members"]) == sorted(ms)
    assert all(e["can_share"] is False for e in got["members"]), got
    assert glance.v2_members(shared_image, owner) == set(ms)
    calls = upstream_calls(tls, rid, 1)
    assert calls == [("GET", "/image/v2/images/%s/members" % shared_image, 200)], calls


def test_delete(pgw, tls, glance, owner, shared_image):
    keep, gone = unique("keep"), unique("gone")
    glance.add_v2_member(shared_image, owner, keep)
    glance.add_v2_member(shared_image, owner, gone)
    r, rid = call(pgw, "DELETE", "/v1/images/%s/members/%s" % (shared_image, gone), owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {keep}
    calls = upstream_calls(tls, rid, 1)
    assert calls == [("DELETE", "/image/v2/images/%s/members/%s" % (shared_image, gone), 204)], \
        calls


def test_delete_non_member_is_404(pgw, tls, glance, owner, shared_image):
    """A 404 from Glance below the prefix is the v1 404, not a routing error."""
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    r, rid = call(pgw, "DELETE", "/v1/images/%s/members/%s" % (shared_image, unique("no")), owner)
    assert r.status_code == 404, r.text
    assert glance.v2_members(shared_image, owner) == {keep}
    assert_all_prefixed(upstream_calls(tls, rid, 1))


def _shared_ids(r):
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == {"shared_images"}
    ids = [e["image_id"] for e in got["shared_images"]]
    assert len(ids) == len(set(ids)), ids
    assert all(e["can_share"] is False for e in got["shared_images"]), got
    return set(ids)


def test_shared_images_paginated(pgw, tls, glance):
    """45 images shared with m: Glance answers in pages of 20, with next
    links "/v2/images?...&marker=..." (no prefix); the gateway must fetch
    them as /image/v2/images?... and see every image."""
    owner, other, m = unique("owner"), unique("owner2"), unique("m")
    n = 2 * PAGE + 5
    images = {glance.create_image(owner) for _ in range(n)}
    for image in images:
        glance.add_v2_member(image, owner, m)
    theirs = glance.create_image(other)
    glance.add_v2_member(theirs, other, m)
    # Glance agrees on the starting point.
    for image in list(images)[:3]:
        assert glance.v2_members(image, owner) == {m}
    # The premise: asked through the prefix, Glance still writes its next
    # link without it.
    r = requests.get(tls.prefix_url + "/v2/images?visibility=shared&member_status=all&limit=200",
                     headers=harness.glance_headers(owner), verify=str(tls.pki.ca_cert),
                     timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == PAGE
    assert r.json()["next"].startswith("/v2/images?"), r.json()["next"]

    # As the owner: its own images shared with m, all 45 (3 pages).
    r, rid = call(pgw, "GET", "/v1/shared-images/%s" % m, owner)
    assert _shared_ids(r) == images
    calls = upstream_calls(tls, rid, 3)
    assert_all_prefixed(calls)
    lists = [c for c in calls if c[1].startswith("/image/v2/images?")]
    assert len(lists) >= 3, calls
    assert all(status == 200 for _, _, status in lists), lists
    assert sum("marker=" in uri for _, uri, _ in lists) >= 2, lists
    # Glance received them with the prefix stripped.
    harness.wait_until(lambda: sum(rid in line and '"GET /v2/images?' in line
                                   for line in glance.log_text().splitlines()) >= 3,
                       5, what="Glance's log of the 3 pages")

    # As the member: every image shared with it, from both owners.
    r, rid = call(pgw, "GET", "/v1/shared-images/%s" % m, m)
    assert _shared_ids(r) == images | {theirs}
    calls = upstream_calls(tls, rid, 3)
    assert_all_prefixed(calls)
    assert sum("marker=" in uri for _, uri, _ in calls) >= 2, calls
