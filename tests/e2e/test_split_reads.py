"""Request parsing under arbitrary TCP segmentation, over raw sockets.

libevhtp 1.2.18 reads one byte past a read that ends inside the request
target (member "ten" + "ant1" became "tensant1" upstream), and loses a NUL,
an obs-fold line or a bare CR in the header block before any hook sees
them; the gateway's parser guard (docs/ARCHITECTURE.md, "Parser guard")
holds partial request lines back and scans the raw header block. These
tests cut the bytes of real requests everywhere and check, straight from
Glance, that exactly the expected members exist:

1. a pipelined keep-alive stream of v1 calls (single add, bulk add with a
   Content-Length body, bulk add with a chunked body, a bad body, a bad id
   whose body is a whole DELETE request, list, 405, delete, health checks,
   Connection: close, then a request that must never run), cut at random
   points (fixed seeds) into pieces of 1..40 bytes sent with TCP_NODELAY
   and a short pause;
2. one request cut once at every offset of its request line, one
   connection per offset;
3. header blocks with a NUL, a folded line or a bare CR, cut at every
   offset within 3 bytes of the bad byte: 400, closed, Glance unchanged;
4. request lines the guard must not let through however they are cut: one
   over 8 KiB (414), one with a NUL in the target, and empty lines before
   a request line (RFC 9112 section 2.2: ignored); and a chunked body with
   a trailer section followed by another request (libevhtp ends the
   message at the end of the first trailer field and leaves the empty line
   that closes the trailer section to the next request; the guard drops
   it, as it drops any empty line before a request line).

Everything is deterministic: the cut points depend only on the seed and on
lengths (project and image ids and the port have a fixed length). A
failure message names the seed and the cut points.
"""

import json
import random
import socket
import time

import pytest

from harness import RawConn, glance_headers, unique

SEEDS = list(range(25))
MAX_PIECE = 40
PAUSE = 0.015  # between the pieces of a request cut once: separate reads


def head_bytes(method, target, project, port, extra=(), body=b"", content_length=True,
               first_lines=()):
    """A request with realistic headers: Host, the identity headers
    glance_headers(project) (token included), User-Agent, and extra lines."""
    lines = ["%s %s HTTP/1.1" % (method, target)]
    lines += list(first_lines)
    lines.append("Host: 127.0.0.1:%d" % port)
    lines += ["%s: %s" % kv for kv in glance_headers(project).items()]
    lines.append("User-Agent: python-glanceclient")
    lines.append("Accept-Encoding: gzip, deflate")
    lines += list(extra)
    if content_length and body:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body, cuts):
    """body in chunked transfer coding, one chunk per piece between cuts."""
    bounds = [0] + sorted(set(c for c in cuts if 0 < c < len(body))) + [len(body)]
    out = b""
    for a, b in zip(bounds, bounds[1:]):
        out += b"%x\r\n%s\r\n" % (b - a, body[a:b])
    return out + b"0\r\n\r\n"


def random_pieces(data, rng):
    """data cut at random points into pieces of 1..MAX_PIECE bytes, with a
    good share of single bytes."""
    pieces, i = [], 0
    while i < len(data):
        n = 1 if rng.random() < 0.2 else rng.randint(1, MAX_PIECE)
        pieces.append(data[i:i + n])
        i += n
    return pieces


def nodelay_conn(port, timeout=20):
    c = RawConn(port, timeout=timeout)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def member_ids(resp):
    return {m["member_id"] for m in resp.json()["members"]}


# --------------------------------------------------------------------------
# 1. a pipelined stream cut at random points

def pipelined_stream(image, owner, port, rng):
    """The bytes of the stream and, per request, (method for reading the
    reply, expected status, check of the reply or None); and the members
    Glance must have at the end."""
    img = "/v1/images/%s/members" % image
    reqs = []

    # single add, no body at all (no Content-Length either)
    reqs.append((head_bytes("PUT", img + "/tenant1", owner, port), "PUT", 204, None))

    # bulk add, Content-Length body; a JSON escape in an id
    body = json.dumps({"members": [{"member_id": "tenant3", "can_share": False},
                                   {"member_id": "tenant4"}]}).replace("tenant4", "ten\\u0061nt4")
    reqs.append((head_bytes("PUT", img + "/tenant2", owner, port,
                            ["Content-Type: application/json"], body.encode()), "PUT", 204, None))

    # bulk add, chunked body in 3..6 chunks; a percent escape in the path,
    # a two-byte UTF-8 id, an id that is already a member (409 upstream: done)
    body = json.dumps({"members": [{"member_id": "tenant6"}, {"member_id": "ten\u00e4nt7"},
                                   {"member_id": "tenant1", "can_share": False}]},
                      ensure_ascii=False).encode()
    cuts = rng.sample(range(1, len(body)), rng.randint(2, 5))
    reqs.append((head_bytes("PUT", img + "/ten%61nt5", owner, port,
                            ["Content-Type: application/json", "Transfer-Encoding: chunked"],
                            chunked(body, cuts), content_length=False), "PUT", 204, None))

    # a well-framed body that is not a member list: 400, connection kept
    bad = b'{"members": "tenant9"}'
    reqs.append((head_bytes("PUT", img + "/tenant8", owner, port,
                            ["Content-Type: application/json"], bad), "PUT", 400,
                 lambda r: r.json()["error"]["code"] == 400))

    # a bad id ("/" percent-encoded) with a body that is a whole request:
    # 400 once the body is read, the body never runs, connection kept
    smuggled = head_bytes("DELETE", img + "/tenant2", owner, port)
    reqs.append((head_bytes("PUT", img + "/ten%2Fant", owner, port,
                            ["Content-Type: application/json"], smuggled), "PUT", 400,
                 lambda r: r.json()["error"]["code"] == 400))

    after_adds = {"tenant1", "tenant2", "tenant3", "tenant4", "tenant5", "tenant6",
                  "ten\u00e4nt7"}
    reqs.append((head_bytes("GET", img, owner, port), "GET", 200,
                 lambda r: member_ids(r) == after_adds))

    # GET on a member: 405, nothing upstream
    reqs.append((head_bytes("GET", img + "/tenant1", owner, port), "GET", 405, None))

    reqs.append((head_bytes("DELETE", img + "/tenant3", owner, port), "DELETE", 204, None))

    reqs.append((head_bytes("HEAD", "/healthcheck", owner, port), "HEAD", 200, None))

    final = after_adds - {"tenant3"}
    reqs.append((head_bytes("GET", img, owner, port), "GET", 200,
                 lambda r: member_ids(r) == final))

    reqs.append((head_bytes("GET", "/healthcheck", owner, port, ["Connection: close"]),
                 "GET", 200, lambda r: r.body == b"OK"))

    # After a request that said Connection: close, a request that must
    # never be parsed nor run (the client breaks RFC 9112 section 9.6 on
    # purpose). The gateway may have closed by the time it arrives: a reset
    # while sending it is fine.
    stream = b"".join(r[0] for r in reqs)
    after_close = len(stream)
    stream += head_bytes("DELETE", img + "/tenant1", owner, port)
    return stream, after_close, [r[1:] for r in reqs], final


@pytest.mark.parametrize("seed", SEEDS)
def test_pipelined_stream_cut_at_random(gateway, glance, owner, seed):
    image = glance.create_image(owner, "shared")
    rng = random.Random(seed)
    stream, after_close, expected, final = pipelined_stream(image, owner, gateway.port, rng)
    pieces = random_pieces(stream, rng)
    pauses = [rng.choice((0, 0, 0.0005, 0.001, 0.002, 0.003)) for _ in pieces]
    cut_points = []
    pos = 0
    for p in pieces[:-1]:
        pos += len(p)
        cut_points.append(pos)
    where = "seed %d, %d bytes cut at %s" % (seed, len(stream), cut_points)

    with nodelay_conn(gateway.port) as c:
        sent = 0
        for piece, pause in zip(pieces, pauses):
            try:
                c.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                if sent < after_close:
                    raise
                break                 # closed after the Connection: close reply
            sent += len(piece)
            if pause:
                time.sleep(pause)
        for i, (method, status, check) in enumerate(expected):
            resp = c.read_response(method)
            assert resp.status == status, "request %d: %r (%s)" % (i, resp, where)
            if check is not None:
                assert check(resp), "request %d: %r (%s)" % (i, resp, where)
        assert c.closed_by_peer(timeout=5), "open after Connection: close (%s)" % where
        assert c.buf == b"", "bytes after the last reply: %r (%s)" % (c.buf[:200], where)
    assert glance.v2_members(image, owner) == final, where


# --------------------------------------------------------------------------
# 2. one request cut once at every offset of its request line

def run_split(port, plans, pause=PAUSE):
    """plans: a list of piece lists, one connection each. Piece j of every
    connection is sent, then a pause, then piece j+1... so each piece is a
    read of its own on the gateway's side. Returns the open connections."""
    conns = [nodelay_conn(port) for _ in plans]
    try:
        for j in range(max(len(p) for p in plans)):
            for c, pieces in zip(conns, plans):
                if j < len(pieces) and pieces[j]:
                    c.send(pieces[j])
            time.sleep(pause)
    except BaseException:
        for c in conns:
            c.close()
        raise
    return conns


@pytest.mark.parametrize("escape", ["plain", "percent"])
def test_request_line_cut_at_every_offset(gateway, glance, owner, shared_image, escape):
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)

    def request(member):
        segment = member if escape == "plain" else member.replace("a", "%61")
        return head_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, segment), owner,
                          gateway.port, ["Content-Length: 0"])

    line_end = request("tenant-000").index(b"\r\n") + 2  # the same for every member below
    expected, plans = {}, []
    for cut in range(1, line_end):   # the first piece ends anywhere in the request line
        member = "tenant-%03d" % cut
        data = request(member)
        plans.append([data[:cut], data[cut:]])
        expected[cut] = member
    batch = 40
    for start in range(0, len(plans), batch):
        cuts = list(expected)[start:start + batch]
        conns = run_split(gateway.port, plans[start:start + batch])
        try:
            for cut, c in zip(cuts, conns):
                resp = c.read_response()
                assert resp.status == 204, "cut at %d (%r): %r" % (
                    cut, plans[cut - 1][0][-20:], resp)
        finally:
            for c in conns:
                c.close()
    members = glance.v2_members(shared_image, owner)
    assert members - {keep} == set(expected.values()), (
        "missing %s, unexpected %s" % (sorted(set(expected.values()) - members),
                                        sorted(members - set(expected.values()) - {keep})))
    assert keep in members


# --------------------------------------------------------------------------
# 3. bad header blocks cut around the bad byte

ADD = b'{"member": {"can_share": false}}'

# name -> (lines right after the request line, lines after the others, the
# bad byte's surroundings to find in the request, the bad byte's offset in them)
BAD = {
    "nul-in-value": ((), ["X-Trace: ab\x00cd"], b"ab\x00", 2),
    "nul-in-name": ((), ["X-Tr\x00ace: abcd"], b"X-Tr\x00", 4),
    "nul-first-header-byte": (["\x00X-Trace: abcd"], (), b"\x00X-Trace", 0),
    "tab-fold": ((), ["X-Trace: ab", "\tcd"], b"\r\n\tcd", 2),
    "space-fold": ((), ["X-Trace: ab", " cd"], b"\r\n cd", 2),
    "tab-fold-after-request-line": (["\tX-Trace: cd"], (), b"\r\n\tX-Trace", 2),
    "tab-folded-content-length": ((), ["Content-Length: 0", "\t%d" % len(ADD)],
                                  b"\r\n\t%d" % len(ADD), 2),
    "bare-cr-in-value": ((), ["X-Trace: ab\rcd"], b"ab\rcd", 2),
    "bare-cr-at-line-start": ((), ["\rX-Trace: cd"], b"\n\rX-Trace", 1),
    "cr-cr-lf-last-header": ((), ["X-Trace: ab\r"], b"ab\r\r\n\r\n", 2),
}


def bad_request(name, image, member, owner, port):
    first, extra, marker, offset = BAD[name]
    lines = ["Content-Type: application/json"]
    if not any(line.startswith("Content-Length") for line in extra):
        lines.append("Content-Length: %d" % len(ADD))
    lines += list(extra)
    data = head_bytes("PUT", "/v1/images/%s/members/%s" % (image, member), owner, port, lines,
                      first_lines=first, content_length=False) + ADD
    assert data.count(marker) == 1, (name, data)
    return data, data.index(marker) + offset


@pytest.mark.parametrize("mode", ["fresh", "keepalive", "pipelined"])
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_header_block_cut_around_the_bad_byte(gateway, glance, owner, shared_image, name,
                                                  mode):
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    good_members, plans, labels = set(), [], []
    for k in range(-3, 5):
        member = unique("bad")
        data, bad_at = bad_request(name, shared_image, member, owner, gateway.port)
        if k <= 3:
            cut = bad_at + k          # the second piece starts k bytes after the bad byte
            pieces = [data[:cut], data[cut:]]
            label = "cut at bad byte %+d" % k
        else:                         # one byte a read from 3 before to 3 after it
            pieces = ([data[:bad_at - 3]] + [data[i:i + 1] for i in range(bad_at - 3, bad_at + 4)]
                      + [data[bad_at + 4:]])
            label = "bytes around the bad byte one by one"
        good = None
        if mode != "fresh":
            gm = unique("good")
            good_members.add(gm)
            good = head_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, gm), owner,
                              gateway.port, ["Content-Length: 0"])
            if mode == "pipelined":
                pieces = [good + pieces[0]] + pieces[1:]
        plans.append((good if mode == "keepalive" else None, pieces))
        labels.append(label)

    conns = [nodelay_conn(gateway.port) for _ in plans]
    try:
        if mode == "keepalive":       # a first request answered before the bad one starts
            for c, (good, _) in zip(conns, plans):
                c.send(good)
            for c, label in zip(conns, labels):
                resp = c.read_response()
                assert resp.status == 204, "%s: first request: %r" % (label, resp)
        for j in range(max(len(p) for _, p in plans)):
            for c, (_, pieces) in zip(conns, plans):
                if j < len(pieces) and pieces[j]:
                    try:
                        c.send(pieces[j])
                    except (BrokenPipeError, ConnectionResetError):
                        pass          # refused already; the reply is read below
            time.sleep(PAUSE)
        for c, label in zip(conns, labels):
            if mode == "pipelined":
                resp = c.read_response()
                assert resp.status == 204, "%s: first request: %r" % (label, resp)
            resp = c.read_response()
            assert resp.status == 400, "%s: %r" % (label, resp)
            assert resp.json()["error"]["code"] == 400, "%s: %r" % (label, resp)
            assert (resp.header("Connection") or "").lower() == "close", "%s: %r" % (label, resp)
            assert c.closed_by_peer(timeout=5), "%s: connection left open" % label
            assert c.buf == b"", "%s: bytes after the 400: %r" % (label, c.buf[:200])
    finally:
        for c in conns:
            c.close()
    assert glance.v2_members(shared_image, owner) == {keep} | good_members


# --------------------------------------------------------------------------
# 4. request lines, however they are cut

def long_line_request(length):
    """A GET whose request line (CRLF excluded) is length bytes long: a v1
    member list whose image id is far too long, so that the gateway itself
    answers (400) rather than the upstream."""
    prefix, suffix = b"GET /v1/images/", b"/members HTTP/1.1"
    line = prefix + b"a" * (length - len(prefix) - len(suffix)) + suffix
    assert len(line) == length
    return line + b"\r\nHost: 127.0.0.1\r\n\r\n", length


LONG_LINE_CUTS = {
    "one-write": lambda d, n: [d],
    "cut-before-cr": lambda d, n: [d[:n], d[n:]],
    "cut-before-lf": lambda d, n: [d[:n + 1], d[n + 1:]],
    "cut-at-4096": lambda d, n: [d[:4096], d[4096:]],
    "cut-at-8000": lambda d, n: [d[:8000], d[8000:]],
    "1k-pieces": lambda d, n: [d[i:i + 1024] for i in range(0, len(d), 1024)],
}

def _long_line_params():
    for n in (8192, 8193, 9000):
        for cut in LONG_LINE_CUTS:
            yield pytest.param(n, cut, id="%d-%s" % (n, cut))


@pytest.mark.parametrize("length,cut", list(_long_line_params()))
def test_request_line_limit_does_not_depend_on_the_cuts(gateway, length, cut):
    """A request line of 8 KiB is served (400 here: the id is too long); one
    byte more is 414 and the connection closed, however the bytes arrive."""
    data, n = long_line_request(length)
    conns = run_split(gateway.port, [LONG_LINE_CUTS[cut](data, n)])
    with conns[0] as c:
        resp = c.read_response("GET")
        if length <= 8192:
            assert resp.status == 400, resp
            assert "id" in resp.json()["error"]["message"], resp
        else:
            assert resp.status == 414, resp
            assert c.closed_by_peer(timeout=5), "connection left open after 414"


def test_nul_in_request_target_cut_around_it(gateway, glance, owner, shared_image):
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    plans, labels = [], []
    for k in [None] + list(range(-3, 4)):
        data = head_bytes("PUT", "/v1/images/%s/members/ten\x00ant%s" % (
            shared_image, "x" if k is None else k + 3), owner, gateway.port,
            ["Content-Length: 0"])
        nul = data.index(b"\x00")
        plans.append([data] if k is None else [data[:nul + k], data[nul + k:]])
        labels.append("one write" if k is None else "cut at NUL %+d" % k)
    conns = run_split(gateway.port, plans)
    statuses = []
    try:
        for c in conns:
            statuses.append(c.read_response().status)
    finally:
        for c in conns:
            c.close()
    members = glance.v2_members(shared_image, owner)
    assert statuses == [400] * len(plans) and members == {keep}, (
        "statuses %s; Glance members %s" % (list(zip(labels, statuses)), sorted(members)))


def test_empty_lines_before_a_request_line_are_ignored(gateway, glance, owner, shared_image):
    """RFC 9112 section 2.2: a server SHOULD ignore at least one empty line
    before a request line (some clients send CRLF after a body). The guard
    already skips them to find the line's end."""
    m1, m2 = "tenant-crlf1", "tenant-crlf2"
    one = head_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m1), owner,
                     gateway.port, ["Content-Length: 0"])
    two = head_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m2), owner,
                     gateway.port, ["Content-Length: 0"])
    data = b"\r\n" + one + b"\r\n" + two
    cut = data.index(b"PUT", 3) - 1           # between the CR and LF of the empty line
    with nodelay_conn(gateway.port, timeout=2) as c:
        c.send(data[:3])
        time.sleep(PAUSE)
        c.send(data[3:cut])
        time.sleep(PAUSE)
        c.send(data[cut:])
        assert [c.read_response().status for _ in range(2)] == [204, 204]
    assert glance.v2_members(shared_image, owner) == {m1, m2}


def test_chunked_trailer_then_next_request(gateway, glance, owner, shared_image):
    m = "tenant-trailer"
    body = chunked(ADD, [7, 19])[:-2] + b"X-Trace: 1\r\n\r\n"   # "0\r\n" + a trailer field
    data = head_bytes("PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
                      gateway.port, ["Content-Type: application/json",
                                     "Transfer-Encoding: chunked"], body, content_length=False)
    data += head_bytes("GET", "/healthcheck", owner, gateway.port)
    cut = data.index(b"X-Trace") + 4
    with nodelay_conn(gateway.port, timeout=2) as c:
        c.send(data[:cut])
        time.sleep(PAUSE)
        c.send(data[cut:])
        first = c.read_response()
        assert first.status == 204, first
        second = c.read_response("GET")
        assert (second.status, second.body) == (200, b"OK"), second
    assert glance.v2_members(shared_image, owner) == {m}
