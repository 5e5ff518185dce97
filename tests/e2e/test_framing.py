"""Request framing, over raw sockets (SPEC section 3): a request that could be
read two ways is refused with 400 and the connection closed; pipelined
requests are answered in order. Glance is checked after each."""

import time

import pytest

from harness import RawConn, glance_headers, unique


def request_bytes(method, path, project, lines, body=b"", host=True):
    head = ["%s %s HTTP/1.1" % (method, path)]
    if host:
        head.append("Host: 127.0.0.1")
    head += ["%s: %s" % kv for kv in glance_headers(project).items()]
    head.append("Content-Type: application/json")
    head += lines
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


ADD = b'{"member": {"can_share": false}}'
SMUGGLED = b"0\r\n\r\nGET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

AMBIGUOUS = {
    "cl-and-te": (["Content-Length: %d" % len(ADD), "Transfer-Encoding: chunked"],
                  b"%x\r\n%s\r\n0\r\n\r\n" % (len(ADD), ADD), True),
    "te-and-cl": (["Transfer-Encoding: chunked", "Content-Length: 5"], SMUGGLED, True),
    "two-differing-cl": (["Content-Length: 0", "Content-Length: %d" % len(ADD)], ADD, True),
    "cl-list-differing": (["Content-Length: 0, %d" % len(ADD)], ADD, True),
    "te-gzip-chunked": (["Transfer-Encoding: gzip, chunked"],
                        b"%x\r\n%s\r\n0\r\n\r\n" % (len(ADD), ADD), True),
    "te-identity": (["Transfer-Encoding: identity", "Content-Length: %d" % len(ADD)], ADD, True),
    "te-twice": (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
                 b"%x\r\n%s\r\n0\r\n\r\n" % (len(ADD), ADD), True),
    "no-host": (["Content-Length: %d" % len(ADD)], ADD, False),
    "folded-header": (["Content-Length: %d" % len(ADD), "X-Folded: a", " b"], ADD, True),
    "folded-header-tab": (["Content-Length: %d" % len(ADD), "X-Folded: a", "\tb"], ADD, True),
    "nul-in-value": (["Content-Length: %d" % len(ADD), "X-A: a\x00b"], ADD, True),
    "bare-cr-in-value": (["Content-Length: %d" % len(ADD), "X-A: a\rb"], ADD, True),
    "folded-content-length": (["Content-Length: 0", "\t%d" % len(ADD)], ADD, True),
}


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
def test_ambiguous_framing_is_400_and_closed(gateway, glance, owner, shared_image, name):
    lines, body, host = AMBIGUOUS[name]
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    m = unique("m")
    data = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner, lines,
                         body, host=host)
    with RawConn(gateway.port) as c:
        c.send(data)
        resp = c.read_response()
        assert resp.status == 400, resp
        assert resp.json()["error"]["code"] == 400
        assert c.closed_by_peer(timeout=5), "connection left open after ambiguous framing"
    assert glance.v2_members(shared_image, owner) == {keep}


def test_valid_chunked_body_is_accepted(gateway, glance, owner, shared_image):
    m = unique("m")
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ADD), ADD)
    data = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
                         ["Transfer-Encoding: chunked"], body)
    with RawConn(gateway.port) as c:
        c.send(data)
        resp = c.read_response()
        assert resp.status == 204, resp
    assert glance.v2_members(shared_image, owner) == {m}


def test_pipelined_puts_answered_in_order(gateway, glance, owner, shared_image):
    m1, m2 = unique("m1"), unique("m2")
    first = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m1), owner,
                          ["Content-Length: %d" % len(ADD)], ADD)
    bad = b'{"members": "not-a-list"}'
    second = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m2), owner,
                           ["Content-Length: %d" % len(bad)], bad)
    third = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m2), owner,
                          ["Content-Length: 0"])
    with RawConn(gateway.port) as c:
        c.send(first + second + third)  # one write
        statuses = [c.read_response().status for _ in range(3)]
    assert statuses == [204, 400, 204]
    assert glance.v2_members(shared_image, owner) == {m1, m2}


def test_pipelined_two_adds(gateway, glance, owner, shared_image):
    m1, m2 = unique("m1"), unique("m2")
    reqs = b"".join(
        request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
                      ["Content-Length: %d" % len(ADD)], ADD) for m in (m1, m2))
    with RawConn(gateway.port) as c:
        c.send(reqs)
        r1, r2 = c.read_response(), c.read_response()
        assert (r1.status, r2.status) == (204, 204), (r1, r2)
        # The connection still serves a third request afterwards.
        c.send(request_bytes("GET", "/v1/images/%s/members" % shared_image, owner, []))
        r3 = c.read_response("GET")
        assert r3.status == 200, r3
        assert sorted(x["member_id"] for x in r3.json()["members"]) == sorted([m1, m2])
    assert glance.v2_members(shared_image, owner) == {m1, m2}


def test_early_413_does_not_parse_the_rest_as_a_request(make_gateway, glance, owner, shared_image):
    """libevhtp would read the unread body of an early 413 as the next
    request (request smuggling). The body here carries a DELETE of an
    existing member: it must never run."""
    gw = make_gateway(max_body_bytes=1024)
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    smuggled = request_bytes("DELETE", "/v1/images/%s/members/%s" % (shared_image, keep),
                             owner, ["Content-Length: 0"])
    padding = b" " * 2048
    body = padding + smuggled
    data = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, unique("m")), owner,
                         ["Content-Length: %d" % len(body)], body)
    with RawConn(gw.port) as c:
        c.send(data)
        resp = c.read_response()
        assert resp.status == 413, resp
        assert (resp.header("Connection") or "").lower() == "close"
        assert c.closed_by_peer(timeout=10), "a second reply or an open connection after an early 413"
        assert c.buf == b"", "bytes after the 413: %r" % c.buf[:200]
    assert glance.v2_members(shared_image, owner) == {keep}
    assert "method=DELETE" not in gw.access_log_text()


def test_204_carries_no_content_length(gateway, glance, owner, shared_image):
    """libevhtp adds Content-Length: 0 to every bodiless reply; a 204 must
    not have one (RFC 9110 8.6)."""
    m = unique("m")
    with RawConn(gateway.port) as c:
        c.send(request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
                             ["Content-Length: 0"]))
        resp = c.read_response()
        assert resp.status == 204, resp
        assert resp.header("Content-Length") is None, resp
        assert resp.header("Transfer-Encoding") is None, resp
        # and the connection serves the next request
        c.send(request_bytes("GET", "/v1/images/%s/members" % shared_image, owner, []))
        resp = c.read_response(method="GET")
        assert resp.status == 200, resp
        assert m in {x["member_id"] for x in resp.json()["members"]}
    assert m in glance.v2_members(shared_image, owner)


def test_request_line_split_across_reads(gateway, glance, owner, shared_image):
    """libevhtp 1.2.18 reads one byte past a chunk that ends inside the
    request target and takes it into the path ("ten" + "ant1" became
    "tensant1"). The gateway holds a request line back until it is whole."""
    m = unique("tenant")
    data = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
                         ["Content-Length: 0"])
    cut = data.index(m.encode()) + 3            # inside the member id
    with RawConn(gateway.port) as c:
        c.send(data[:cut])
        time.sleep(0.3)                          # a separate read on the gateway's side
        c.send(data[cut:])
        resp = c.read_response()
        assert resp.status == 204, resp
    members = glance.v2_members(shared_image, owner)
    assert m in members, members
    assert not [x for x in members if x.startswith(m[:3]) and x != m and "tenant" in x and len(x) != len(m)]


def test_request_line_byte_by_byte_then_pipelined(gateway, glance, owner, shared_image):
    a, b = unique("tenant"), unique("tenant")
    one = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, a), owner,
                        ["Content-Length: 0"])
    two = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, b), owner,
                        ["Content-Length: 0"])
    with RawConn(gateway.port) as c:
        line_end = one.index(b"\r\n") + 2
        for i in range(line_end):
            c.send(one[i:i + 1])
            time.sleep(0.002)
        # the rest of the first request and half of the second in one write
        half = two.index(b.encode()) + 4
        c.send(one[line_end:] + two[:half])
        time.sleep(0.3)
        c.send(two[half:])
        assert c.read_response().status == 204
        assert c.read_response().status == 204
    members = glance.v2_members(shared_image, owner)
    assert {a, b} <= members, members


def test_request_line_too_long_is_414(gateway):
    with RawConn(gateway.port) as c:
        c.send(b"GET /" + b"a" * 9000)
        resp = c.read_response(method="GET")
        assert resp.status == 414, resp
        assert c.closed_by_peer(timeout=10)


def test_connection_close_reply_is_the_only_reply(gateway, glance, owner, shared_image):
    """A reply that closes the connection (HTTP/1.0, Connection: close) is
    not followed by anything, not even for bytes pipelined after it."""
    m, late = unique("m"), unique("late")
    first = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
                          ["Content-Length: 0", "Connection: close"])
    after = request_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, late), owner,
                          ["Content-Length: 0"])
    with RawConn(gateway.port) as c:
        c.send(first + after)
        resp = c.read_response()
        assert resp.status == 204, resp
        assert c.closed_by_peer(timeout=10)
        assert c.buf == b"", "more after a Connection: close reply: %r" % c.buf[:200]
    members = glance.v2_members(shared_image, owner)
    assert m in members and late not in members, members
    with RawConn(gateway.port) as c:
        c.send(request_bytes("GET", "/healthcheck", owner, [], host=True).replace(
            b"HTTP/1.1", b"HTTP/1.0"))
        resp = c.read_response(method="GET")
        assert resp.status == 200, resp
        assert c.closed_by_peer(timeout=10)
        assert c.buf == b"", c.buf[:200]
