"""X-Openstack-Request-Id and secrets in logs (SPEC section 3)."""

import re
import uuid

import harness
from harness import SECRET_TOKEN, unique, v1

REQ_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_request_id_is_passed_through(make_gateway, glance, tls, owner, shared_image):
    gw = make_gateway()
    rid = "req-%s" % uuid.uuid4()
    members = [unique("m") for _ in range(3)]
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, members[0]), owner,
           body={"members": [{"member_id": x} for x in members[1:]]},
           headers={"X-Openstack-Request-Id": rid})
    assert r.status_code == 204, r.text
    assert r.headers.get("X-Openstack-Request-Id") == rid
    assert glance.v2_members(shared_image, owner) == set(members)
    # Every upstream call carried it: nginx saw it on each POST, Glance logged it.
    sent = " reqid=%s " % rid
    harness.wait_until(lambda: tls.access_log_text().count(sent) >= 3, 5,
                       what="3 upstream calls with the request id in nginx's access log")
    for line in tls.access_log_text().splitlines():
        if sent in line:
            assert "POST /v2/images/%s/members " % shared_image in line, line
            assert "upstream_reqid=%s " % rid in line, line  # Glance answered with it
    harness.wait_until(lambda: rid in glance.log_text(), 5, what="the request id in Glance's log")
    # The gateway's access log names it too.
    gw.stop()
    assert rid in gw.access_log_text(), gw.access_log_text()[-2000:]


def test_bad_request_id_is_replaced(gateway, glance, tls, owner, shared_image):
    for bad in ("hello", "req-not-a-uuid", "req-%s-x" % uuid.uuid4(), str(uuid.uuid4()),
                "req-%s" % str(uuid.uuid4()).upper().replace("-", "")):
        m = unique("m")
        r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
               headers={"X-Openstack-Request-Id": bad})
        assert r.status_code == 204, r.text
        got = r.headers.get("X-Openstack-Request-Id", "")
        assert REQ_ID.match(got), (bad, got)
        assert got != bad
        assert " reqid=%s " % bad not in tls.access_log_text(), "the bad id went upstream"


def test_request_id_generated_when_absent(gateway, owner, shared_image):
    ids = set()
    for _ in range(3):
        r = v1(gateway.url, "GET", "/v1/images/%s/members" % shared_image, owner)
        assert r.status_code == 200, r.text
        rid = r.headers.get("X-Openstack-Request-Id", "")
        assert REQ_ID.match(rid), rid
        ids.add(rid)
    assert len(ids) == 3


def test_request_id_on_error_replies(gateway, owner, shared_image):
    rid = "req-%s" % uuid.uuid4()
    r = v1(gateway.url, "GET", "/v1/images/%s/members/x" % shared_image, owner,
           headers={"X-Openstack-Request-Id": rid})
    assert r.status_code == 405
    assert r.headers.get("X-Openstack-Request-Id") == rid


def test_token_and_body_never_logged(make_gateway, tls, glance, owner, shared_image):
    gw = make_gateway(level="debug")
    secret_value = "BODY-SECRET-5678"
    m = unique("m")
    calls = [
        ("PUT", "/v1/images/%s/members/%s" % (shared_image, m),
         {"members": [{"member_id": unique("x")}], "note": secret_value}),
        ("PUT", "/v1/images/%s/members/%s" % (shared_image, m), '{"note": "%s", ' % secret_value),
        ("PUT", "/v1/images/%s/members" % shared_image,
         {"memberships": [{"member_id": m}], "note": secret_value}),
        ("GET", "/v1/images/%s/members" % shared_image, None),
        ("GET", "/v1/shared-images/%s" % m, None),
        ("DELETE", "/v1/images/%s/members/%s" % (shared_image, m), None),
        ("DELETE", "/v1/images/%s/members/%s" % (shared_image, m), None),
        ("GET", "/v2/images", None),
    ]
    for method, path, body in calls:
        if isinstance(body, str):
            v1(gw.url, method, path, owner, data=body)
        else:
            v1(gw.url, method, path, owner, body=body)
    # The token did go upstream (nginx logs only whether it was present).
    assert "token=yes" in tls.access_log_text()
    mine = [line for line in tls.access_log_text().splitlines()
            if "/v2/images/%s/" % shared_image in line]
    assert mine and all("token=yes" in line for line in mine), mine
    gw.stop()
    text = gw.log_text()
    assert text.strip(), "the gateway logged nothing at level=debug"
    assert SECRET_TOKEN not in text
    assert secret_value not in text


def test_end_to_end_headers_forwarded_hop_by_hop_dropped(make_gateway, bad_upstream, owner):
    b = bad_upstream("echo")  # answers 200 to everything, records the headers
    gw = make_gateway(upstream=b)
    rid = "req-%s" % uuid.uuid4()
    headers = {
        "User-Agent": "legacy-tool/1.0",
        "X-Custom-End2End": "kept",
        "X-Openstack-Request-Id": rid,
        "Connection": "keep-alive",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "websocket",
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "Proxy-Foo": "bar",
    }
    r = v1(gw.url, "PUT", "/v1/images/img-1/members/%s" % unique("m"), owner,
           body={"member": {"can_share": False}}, headers=headers)
    assert r.status_code == 204, r.text
    seen = b.request_headers()
    names = {k.lower() for k, _ in seen}
    got = {k.lower(): v for k, v in seen}
    assert got.get("x-auth-token") == SECRET_TOKEN
    for k in ("X-Identity-Status", "X-Project-Id", "X-Roles", "X-Tenant-Id", "X-User-Id"):
        assert k.lower() in names, (k, seen)
    assert got["x-project-id"] == owner
    assert got.get("user-agent") == "legacy-tool/1.0"
    assert got.get("x-custom-end2end") == "kept"
    assert got.get("x-openstack-request-id") == rid
    assert got.get("host") == "127.0.0.1:%d" % b.port
    assert got.get("content-type", "").startswith("application/json")
    for hop in ("keep-alive", "te", "trailer", "upgrade", "proxy-authorization", "proxy-foo",
                "transfer-encoding"):
        assert hop not in names, (hop, seen)
    # The client's Connection header is not passed on (the gateway's client may send its own).
    assert got.get("connection", "").lower() != "keep-alive", seen
