"""Bad bodies, bad ids and size limits are answered before anything is sent
upstream, so Glance is unchanged (SPEC section 1, bodies)."""

import http.client
import json
import socket

import pytest

from harness import RawConn, glance_headers, raw_request, unique, v1


def nested(depth, member):
    """A bulk body whose deepest container is at the given depth."""
    inner = depth - 3  # object, members array, entry object
    return ('{"members":[{"member_id":"%s","pad":%s%s}]}'
            % (member, "[" * inner, "]" * inner))


ADD_BAD_BODIES = {
    "malformed": '{"members": [{"member_id": "x"}',
    "not-json": "member_id=x",
    "trailing-garbage": '{"members": []} x',
    "array-body": '[{"member_id": "x"}]',
    "string-body": '"x"',
    "number-body": "42",
    "members-not-array": '{"members": "x"}',
    "members-object": '{"members": {"member_id": "x"}}',
    "entry-not-object": '{"members": ["x"]}',
    "entry-without-member-id": '{"members": [{"can_share": false}]}',
    "member-id-number": '{"members": [{"member_id": 12}]}',
    "member-id-null": '{"members": [{"member_id": null}]}',
    "can-share-string": '{"members": [{"member_id": "x", "can_share": "yes"}]}',
    "member-can-share-string": '{"member": {"can_share": "false"}}',
    "member-can-share-number": '{"member": {"can_share": 0}}',
    "member-id-with-slash": '{"members": [{"member_id": "a/b"}]}',
    "member-id-empty": '{"members": [{"member_id": ""}]}',
    "member-id-256": '{"members": [{"member_id": "%s"}]}' % ("a" * 256),
    "member-id-newline": '{"members": [{"member_id": "a\\nb"}]}',
    "member-id-control": '{"members": [{"member_id": "a\\u0001b"}]}',
    "nested-33": nested(33, "deep33"),
    "nested-10000": nested(10000, "deep10000"),
}

REPLACE_BAD_BODIES = {
    "malformed": '{"memberships": [',
    "array-body": '[{"member_id": "x"}]',
    "empty-object": "{}",
    "memberships-not-array": '{"memberships": "x"}',
    "memberships-null": '{"memberships": null}',
    "entry-without-member-id": '{"memberships": [{"member_id": "x"}, {"can_share": false}]}',
    "member-id-number": '{"memberships": [{"member_id": 7}]}',
    "can-share-string": '{"memberships": [{"member_id": "x", "can_share": "true"}]}',
    "member-id-with-slash": '{"memberships": [{"member_id": "x/y"}]}',
    "nested-33": nested(33, "x").replace('"members"', '"memberships"'),
}


@pytest.fixture
def image_with_member(glance, owner, shared_image):
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    return shared_image, keep


def assert_400(r):
    assert r.status_code == 400, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert r.json()["error"]["code"] == 400


@pytest.mark.parametrize("name", sorted(ADD_BAD_BODIES))
def test_bad_add_body(gateway, glance, owner, image_with_member, name):
    image, keep = image_with_member
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("m")), owner,
           data=ADD_BAD_BODIES[name])
    assert_400(r)
    assert glance.v2_members(image, owner) == {keep}


@pytest.mark.parametrize("name", sorted(REPLACE_BAD_BODIES))
def test_bad_replace_body(gateway, glance, owner, image_with_member, name):
    image, keep = image_with_member
    r = v1(gateway.url, "PUT", "/v1/images/%s/members" % image, owner,
           data=REPLACE_BAD_BODIES[name])
    assert_400(r)
    assert glance.v2_members(image, owner) == {keep}


def test_nesting_32_is_accepted(gateway, glance, owner, shared_image):
    m = unique("deep32")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, unique("p")), owner,
           data=nested(32, m))
    assert r.status_code == 204, r.text
    assert m in glance.v2_members(shared_image, owner)


BAD_PATHS = {
    "member-slash": "/v1/images/{i}/members/a%2Fb",
    "member-slash-lower": "/v1/images/{i}/members/a%2fb",
    "member-256": "/v1/images/{i}/members/" + "m" * 256,
    "image-256": "/v1/images/" + "i" * 256 + "/members/m1",
    "member-newline": "/v1/images/{i}/members/a%0Ab",
    "member-cr": "/v1/images/{i}/members/a%0Db",
    "member-control": "/v1/images/{i}/members/a%01b",
    "image-slash": "/v1/images/x%2F..%2F{i}/members/m1",
}


@pytest.mark.parametrize("name", sorted(BAD_PATHS))
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_bad_ids(gateway, glance, owner, image_with_member, name, method):
    image, keep = image_with_member
    path = BAD_PATHS[name].format(i=image)
    r = v1(gateway.url, method, path, owner)
    assert_400(r)
    assert glance.v2_members(image, owner) == {keep}


def test_bad_id_in_list_and_shared_images(gateway, owner):
    assert_400(v1(gateway.url, "GET", "/v1/images/%s/members" % ("i" * 256), owner))
    assert_400(v1(gateway.url, "GET", "/v1/shared-images/a%2Fb", owner))
    assert_400(v1(gateway.url, "GET", "/v1/shared-images/%s" % ("m" * 256), owner))


def test_id_of_255_bytes_reaches_glance(gateway, glance, owner, shared_image):
    # The limit is "longer than 255 bytes": 255 is a valid id, so the
    # gateway must pass it on (Glance's member column holds 255).
    m = "m" * 255
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m}


def test_percent_encoded_ids_are_decoded_and_reencoded(gateway, glance, owner, shared_image):
    # "a b+c" travels percent-encoded both ways and lands in Glance decoded.
    m = "tenant a+b"
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/tenant%%20a%%2Bb" % shared_image, owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m}
    r = v1(gateway.url, "DELETE", "/v1/images/%s/members/tenant%%20a%%2Bb" % shared_image, owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == set()


# -- limits --------------------------------------------------------------------

def test_more_members_than_max_per_request_is_413(make_gateway, glance, owner, image_with_member):
    gw = make_gateway(max_per_request=10)
    image, keep = image_with_member
    listed = [{"member_id": unique("m")} for _ in range(20)]
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("p")), owner,
           body={"members": listed})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == 413
    r = v1(gw.url, "PUT", "/v1/images/%s/members" % image, owner, body={"memberships": listed})
    assert r.status_code == 413, r.text
    assert glance.v2_members(image, owner) == {keep}
    # Within the limit it works on the same gateway.
    few = [unique("m") for _ in range(5)]
    r = v1(gw.url, "PUT", "/v1/images/%s/members" % image, owner,
           body={"memberships": [{"member_id": x} for x in few]})
    assert r.status_code == 204, r.text
    assert glance.v2_members(image, owner) == set(few)


BIG = 4 * 1024 * 1024  # well past socket buffers, so an undrained close would reset


def big_body(member):
    # Valid JSON: a gateway that ignored the limit would add `member`.
    pad = "x" * BIG
    return ('{"members": [{"member_id": "%s"}], "pad": "%s"}' % (member, pad)).encode()


def send_all_then_read(conn, data_chunks):
    """Send everything (the gateway may answer early), then read the reply."""
    try:
        for chunk in data_chunks:
            conn.send(chunk)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass  # the reply may still be waiting for us
    return conn.read_response()


def test_body_over_max_body_bytes_content_length(make_gateway, glance, owner, image_with_member):
    gw = make_gateway(max_body_bytes=4096)
    image, keep = image_with_member
    m = unique("m")
    body = big_body(m)
    head = raw_request("PUT", "/v1/images/%s/members/%s" % (image, m), owner, body=b"")
    head = head.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body))
    with RawConn(gw.port, timeout=20) as c:
        resp = send_all_then_read(c, [head] + [body[i:i + 65536]
                                               for i in range(0, len(body), 65536)])
        assert resp.status == 413, resp
        assert resp.json()["error"]["code"] == 413
        # Answered before the body arrived: the connection cannot be reused.
        assert (resp.header("Connection") or "").lower() == "close", resp
    assert glance.v2_members(image, owner) == {keep}


def test_body_over_max_body_bytes_chunked(make_gateway, glance, owner, image_with_member):
    gw = make_gateway(max_body_bytes=4096)
    image, keep = image_with_member
    m = unique("m")
    body = big_body(m)
    head = raw_request("PUT", "/v1/images/%s/members/%s" % (image, m), owner, body=b"")
    head = head.replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
    chunks = [head]
    for i in range(0, len(body), 16384):
        piece = body[i:i + 16384]
        chunks.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    chunks.append(b"0\r\n\r\n")
    with RawConn(gw.port, timeout=20) as c:
        resp = send_all_then_read(c, chunks)
        assert resp.status == 413, resp
        assert resp.json()["error"]["code"] == 413
        # Answered before the body arrived: the connection cannot be reused.
        assert (resp.header("Connection") or "").lower() == "close", resp
    assert glance.v2_members(image, owner) == {keep}


def test_body_under_max_body_bytes_works(make_gateway, glance, owner, shared_image):
    gw = make_gateway(max_body_bytes=4096)
    listed = [unique("m") for _ in range(40)]  # about 1.5 KB
    body = json.dumps({"members": [{"member_id": x} for x in listed]})
    assert len(body) < 4096
    p = unique("p")
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, p), owner, data=body)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {p, *listed}


def test_keepalive_survives_400(gateway, glance, owner, image_with_member):
    image, keep = image_with_member
    m = unique("m")
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        headers = dict(glance_headers(owner), **{"Content-Type": "application/json"})
        conn.request("PUT", "/v1/images/%s/members/%s" % (image, m), body=b'{"members": [',
                     headers=headers)
        r1 = conn.getresponse()
        r1.read()
        assert r1.status == 400
        assert (r1.getheader("Connection") or "").lower() != "close"
        assert conn.sock is not None, "the gateway closed the connection after a 400"
        local = conn.sock.getsockname()
        conn.request("PUT", "/v1/images/%s/members/%s" % (image, m),
                     body=b'{"member": {"can_share": false}}', headers=headers)
        r2 = conn.getresponse()
        r2.read()
        assert r2.status == 204
        assert conn.sock is not None and conn.sock.getsockname() == local, \
            "the second request did not use the same connection"
    finally:
        conn.close()
    assert glance.v2_members(image, owner) == {keep, m}
