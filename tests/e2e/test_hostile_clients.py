"""Hostile clients, over raw sockets, against a scripted upstream
(badupstream.py in rules mode, plain HTTP) whose events file records every
request it receives: so each case checks both what the client gets and what
reached the upstream.

- request smuggling and malformed framing (SPEC section 3), each on a v1
  membership route and on a proxied route, each followed in the same write
  by a pipelined request that must never run;
- ids that try to escape their path segment (SPEC section 1);
- JSON bodies at and past the limits (SPEC section 1);
- clients that go away mid-body and mid-fan-out, slowloris clients, idle
  keep-alive connections, thousands of idle connections, and the gateway
  running out of file descriptors: it stays up, serves others, frees every
  descriptor and leaks nothing (the sanitizer build reports leaks at exit,
  checked when the module's gateways stop).

Every case uses its own token (in image or member ids, or proxied paths),
so "the upstream saw nothing" is: no request whose path holds the token,
once a later request (a sentinel) has gone through the same gateway.
"""

import json
import os
import re
import resource
import socket
import threading
import time
import uuid

import pytest

import harness
from harness import RawConn, SECRET_TOKEN, glance_headers, sanitizer_errors

# What the scripted upstream answers (first match wins): a Glance-like
# member to an add, an empty member list, 204 to a removal, a marker body
# to the proxied paths of the pipelining test, and 200 {"ok": true} to
# everything else. Adds to an image whose id starts with "slow-" take
# SLOW_DELAY seconds.
SLOW_DELAY = 1.5
MEMBER = {"image_id": "i", "member_id": "m", "status": "pending",
          "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
          "schema": "/v2/schemas/member"}
RULES = [
    {"method": "POST", "path": r"/v2/images/slow-[^/]+/members$", "status": 200,
     "body": MEMBER, "delay": SLOW_DELAY},
    {"method": "POST", "path": r"/v2/images/[^/]+/members$", "status": 200, "body": MEMBER},
    {"method": "GET", "path": r"/v2/images/[^/]+/members$", "status": 200,
     "body": {"members": []}},
    {"method": "DELETE", "path": r"/v2/images/[^/]+/members/", "status": 204, "body": ""},
    {"method": "*", "path": r"/v2/pipeline-a", "status": 200, "body": {"n": "a"}},
    {"method": "*", "path": r"/v2/pipeline-b", "status": 201, "body": {"n": "b"}},
    # The scripted upstream does not read chunked bodies (it would take
    # them for more requests): for a proxied chunked body it waits until
    # the (small) body is in, answers "Connection: close" and closes, so
    # that no stray answer is left on a connection the gateway pools.
    {"method": "*", "path": r"/v2/closing/", "status": 200, "body": {"ok": True},
     "headers": {"Connection": "close"}, "close": True, "delay": 0.3},
    {"method": "*", "path": r"/", "status": 200, "body": {"ok": True}},
]

CLIENT_TIMEOUT = 2        # the strict gateway's [server] client_timeout
MAX_BODY = 4096           # the strict gateway's [server] max_body_bytes
MAX_MEMBERS = 10          # the strict gateway's [members] max_per_request
ADD = b'{"member": {"can_share": false}}'


# --------------------------------------------------------------------------
# the upstream's record

class Record:
    """What the scripted upstream received, from its events file."""

    def __init__(self, upstream):
        self.upstream = upstream

    def requests(self):
        """[(method, path, body)] in arrival order."""
        out, last = [], {}
        for line in harness.read_text(self.upstream.events).splitlines():
            parts = line.split(" ", 3)
            if parts[0] == "request" and len(parts) >= 4:
                last[parts[1]] = len(out)
                out.append([parts[2], parts[3], ""])
            elif parts[0] == "body" and parts[1] in last:
                out[last[parts[1]]][2] = line.split(" ", 2)[2] if len(parts) > 2 else ""
        return [tuple(r) for r in out]

    def with_token(self, token):
        return [r for r in self.requests() if token in r[1]]

    def headers_of_last(self, token):
        """[(name, value)] of the last request whose path holds token."""
        lines = harness.read_text(self.upstream.events).splitlines()
        starts = [i for i, ln in enumerate(lines)
                  if ln.startswith("request ") and token in ln]
        assert starts, "no upstream request with %s" % token
        conn = lines[starts[-1]].split()[1]
        out = []
        for ln in lines[starts[-1] + 1:]:
            parts = ln.split(" ", 2)
            if parts[0] == "request" and parts[1] == conn:
                break
            if parts[0] == "header" and parts[1] == conn:
                name, _, value = parts[2].partition(": ")
                out.append((name, value))
        return out


def tok(name):
    """A token for one case: letters, digits and dashes only."""
    return "%s-%s" % (re.sub(r"[^a-z0-9]+", "-", name.lower()), uuid.uuid4().hex[:10])


def flush_through(gw, record):
    """A proxied request on a fresh connection, waited for upstream: what
    an earlier case would have sent has arrived by then."""
    sentinel = tok("sentinel")
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/v2/sentinel/" + sentinel, []))
        assert c.read_response("GET").status == 200
    harness.wait_until(lambda: record.with_token(sentinel), 10, what="the sentinel upstream")
    time.sleep(0.05)


def assert_upstream_saw_nothing(gw, record, token):
    flush_through(gw, record)
    seen = record.with_token(token)
    assert seen == [], "the upstream received %r" % seen


# --------------------------------------------------------------------------
# raw requests

def request_bytes(method, target, lines, body=b"", host=True, version="HTTP/1.1",
                  project="p-hostile"):
    head = ["%s %s %s" % (method, target, version)]
    if host:
        head.append("Host: 127.0.0.1")
    head += ["%s: %s" % kv for kv in glance_headers(project).items()]
    head += list(lines)
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def chunked(body, piece=7):
    out = b""
    for i in range(0, len(body), piece):
        out += b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece])
    return out + b"0\r\n\r\n"


def assert_error(resp, status):
    """A JSON error body of SPEC section 2."""
    assert resp.status == status, resp
    assert (resp.header("Content-Type") or "").startswith("application/json"), resp
    err = resp.json()["error"]
    assert err["code"] == status and err["title"] and err["message"], resp


# --------------------------------------------------------------------------
# descriptors of the gateway process

def _tcp_by_inode(pid):
    """inode -> (local port, remote port, state) of the process's netns."""
    rows = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = open("/proc/%d/net/%s" % (pid, table)).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            rows[int(f[9])] = (int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16),
                               f[3])
    return rows


def fd_census(gw, upstream_port):
    """(descriptors other than upstream connections, client connections,
    upstream connections) of the gateway process. The upstream pool keeps
    connections open by design, so they are counted apart."""
    pid = gw.proc.pid
    tcp = _tcp_by_inode(pid)
    total = clients = upstream = 0
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue                   # closed meanwhile
        total += 1
        m = re.match(r"socket:\[(\d+)\]", link)
        if not m or int(m.group(1)) not in tcp:
            continue
        local, remote, state = tcp[int(m.group(1))]
        if remote == upstream_port:
            upstream += 1
        elif local == gw.port and state != "0A":   # 0A: LISTEN
            clients += 1
    return total - upstream, clients, upstream


def wait_fds_back(gw, upstream_port, baseline, timeout=15):
    """Waits until no client connection is left and the other descriptors
    are back to baseline (lingering closes take up to 5 s)."""
    last = {}

    def back():
        last["c"] = fd_census(gw, upstream_port)
        return last["c"][0] == baseline and last["c"][1] == 0
    try:
        harness.wait_until(back, timeout, interval=0.1, what="the gateway's descriptors")
    except harness.HarnessError:
        raise AssertionError("descriptors (other, clients, upstream) %r, baseline %d"
                             % (last["c"], baseline)) from None


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# fixtures: one upstream, two gateways for the module

class Watched:
    """Module-scoped gateways: each test's share of their logs is checked as
    the conftest checks its own gateways (no sanitizer report, no token),
    and at the end they must exit 0 on SIGTERM."""

    def __init__(self):
        self.gateways = []
        self.offsets = {}

    def add(self, gw):
        self.gateways.append(gw)
        return gw

    def new_problems(self):
        problems = []
        for gw in self.gateways:
            text = gw.log_text()
            fresh = text[self.offsets.get(gw.name, 0):]
            self.offsets[gw.name] = len(text)
            problems += ["%s: sanitizer: %s" % (gw.name, ln) for ln in sanitizer_errors(fresh)]
            if SECRET_TOKEN in fresh:
                problems.append("%s: the token appears in the log" % gw.name)
            if gw.proc is not None and not gw.alive():
                problems.append("%s died (exit %s)" % (gw.name, gw.proc.popen.returncode))
        return problems


@pytest.fixture(scope="module")
def upstream():
    b = harness.BadUpstream("rules", rules=RULES)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def record(upstream):
    return Record(upstream)


@pytest.fixture(scope="module")
def watched(mb_binary, upstream):
    w = Watched()
    yield w
    problems = []
    for gw in w.gateways:
        rc, in_time = gw.stop()
        if not in_time or rc != 0:
            problems.append("%s: exit %s on SIGTERM (in time: %s)" % (gw.name, rc, in_time))
    problems += w.new_problems()
    if problems:
        pytest.fail("module gateways at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def strict(mb_binary, upstream, watched):
    """Small limits: client_timeout 2 s, max_body_bytes 4096,
    max_per_request 10, concurrency 4."""
    gw = harness.Gateway(mb_binary, upstream.url, "", name="gateway-hostile-strict",
                         client_timeout=CLIENT_TIMEOUT, max_body_bytes=MAX_BODY,
                         max_per_request=MAX_MEMBERS, concurrency=4, workers=2,
                         request_timeout=10, retries=0)
    return watched.add(gw.start())


@pytest.fixture(scope="module")
def roomy(mb_binary, upstream, watched):
    """Room for big bodies (4 MiB) and a long client_timeout (60 s)."""
    gw = harness.Gateway(mb_binary, upstream.url, "", name="gateway-hostile-roomy",
                         client_timeout=60, max_body_bytes=4 << 20, workers=2,
                         request_timeout=10, retries=0)
    return watched.add(gw.start())


@pytest.fixture(autouse=True)
def _check_logs(request, watched):
    watched.new_problems()            # only what this test causes counts
    yield
    problems = watched.new_problems()
    if problems:
        pytest.fail("module gateways after this test:\n" + "\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# 1. framing that could be read two ways, on both kinds of route

def smuggled_tail(token):
    """A whole request hidden in (or after) a body: it must never run."""
    return request_bytes("DELETE", "/v1/images/img-%s/members/smuggled" % token,
                         ["Content-Length: 0"])


def cl(body):
    return "Content-Length: %d" % len(body)


# name -> function(body, token) -> (header lines, body bytes)
REFUSED = {
    "cl-and-te": lambda b, t: ([cl(b), "Transfer-Encoding: chunked"], chunked(b)),
    "te-and-cl-smuggling": lambda b, t: (["Transfer-Encoding: chunked", "Content-Length: 5"],
                                         b"0\r\n\r\n" + smuggled_tail(t)),
    "cl-twice-differing": lambda b, t: (["Content-Length: 0", cl(b)], b),
    "cl-list-differing": lambda b, t: (["Content-Length: 0, %d" % len(b)], b),
    "cl-list-equal": lambda b, t: (["Content-Length: %d, %d" % (len(b), len(b))], b),
    "cl-negative": lambda b, t: (["Content-Length: -1"], b),
    "cl-plus-sign": lambda b, t: (["Content-Length: +%d" % len(b)], b),
    "cl-not-numeric": lambda b, t: (["Content-Length: 3x"], b),
    "cl-hex": lambda b, t: (["Content-Length: 0x20"], b),
    "cl-overflow": lambda b, t: (["Content-Length: 99999999999999999999999"], b),
    "te-gzip-chunked": lambda b, t: (["Transfer-Encoding: gzip, chunked"], chunked(b)),
    "te-chunked-chunked": lambda b, t: (["Transfer-Encoding: chunked, chunked"], chunked(b)),
    "te-two-fields": lambda b, t: (["Transfer-Encoding: chunked",
                                    "Transfer-Encoding: chunked"], chunked(b)),
    "te-identity": lambda b, t: (["Transfer-Encoding: identity", cl(b)], b),
    "te-chunked-x": lambda b, t: (["Transfer-Encoding: chunkedx"], chunked(b)),
    # Decision: transfer-coding names are case-insensitive (RFC 9112 7),
    # but libevhtp's parser reads a body as chunked only when spelt
    # "chunked" or "Chunked" with nothing around it, and any other spelling
    # as no body at all (the body then parsed as the next request): refused,
    # so that the gateway never reads one message two ways.
    "te-upper-case": lambda b, t: (["Transfer-Encoding: CHUNKED"], chunked(b)),
    "te-trailing-space": lambda b, t: (["Transfer-Encoding: chunked "], chunked(b)),
    "te-tab-before": lambda b, t: (["Transfer-Encoding:\tchunked"], chunked(b)),
    "obs-fold-space": lambda b, t: ([cl(b), "X-Folded: a", " b"], b),
    "obs-fold-tab": lambda b, t: ([cl(b), "X-Folded: a", "\tb"], b),
    "obs-fold-content-length": lambda b, t: (["Content-Length: 0", "\t%d" % len(b)], b),
    "cr-in-value": lambda b, t: ([cl(b), "X-A: a\rb"], b),
    "lf-in-value": lambda b, t: ([cl(b), "X-A: a\nb"], b),
    "nul-in-value": lambda b, t: ([cl(b), "X-A: a\x00b"], b),
    "space-before-colon": lambda b, t: (["Content-Length : %d" % len(b)], b),
    "space-before-colon-te": lambda b, t: (["Transfer-Encoding : chunked", cl(b)], b),
    "chunk-extension": lambda b, t: (["Transfer-Encoding: chunked"],
                                     b"%x;name=value\r\n%s\r\n0\r\n\r\n" % (len(b), b)),
    "chunk-size-ffff-overflow": lambda b, t: (["Transfer-Encoding: chunked"],
                                              b"ffffffffffffffffff\r\n%s\r\n0\r\n\r\n" % b),
    # 2^64 + len(b): libevhtp alone reads a chunk of len(b) bytes, then the
    # hidden request.
    "chunk-size-wraps-to-small": lambda b, t: (["Transfer-Encoding: chunked"],
                                               b"1%016x\r\n%s\r\n0\r\n\r\n" % (len(b), b)
                                               + smuggled_tail(t)),
    "chunk-size-negative": lambda b, t: (["Transfer-Encoding: chunked"],
                                         b"-%x\r\n%s\r\n0\r\n\r\n" % (len(b), b)),
    "chunk-size-not-hex": lambda b, t: (["Transfer-Encoding: chunked"],
                                        b"zz\r\n%s\r\n0\r\n\r\n" % b),
    "chunk-data-overrun": lambda b, t: (["Transfer-Encoding: chunked"],
                                        b"%x\r\n%sXX\r\n0\r\n\r\n" % (len(b), b)),
    "te-in-http10": None,   # below: needs another request line
    "bare-lf-line-endings": None,
    "no-host": None,
}

# Refused only once the body is being read. A proxied request is streamed:
# its head has gone upstream by then, so the upstream may see the request
# start; the gateway then cuts that upstream connection mid-body, so the
# upstream never gets a whole request (and never the pipelined one).
IN_BODY = {"chunk-extension", "chunk-size-ffff-overflow", "chunk-size-wraps-to-small",
           "chunk-size-negative", "chunk-size-not-hex", "chunk-data-overrun"}


def refused_request(name, route, token):
    """(bytes, method) of the refused request on the route."""
    if route == "v1":
        method, target, body = "PUT", "/v1/images/img-%s/members/m-%s" % (token, token), ADD
    else:
        method, target, body = "POST", "/v2/closing/img-%s" % token, b'{"name": "x"}'
    if name == "te-in-http10":
        return request_bytes(method, target, ["Transfer-Encoding: chunked"], chunked(body),
                             version="HTTP/1.0")
    if name == "bare-lf-line-endings":
        return request_bytes(method, target, [cl(body)], body).replace(b"\r\n", b"\n")
    if name == "no-host":
        return request_bytes(method, target, [cl(body)], body, host=False)
    lines, data = REFUSED[name](body, token)
    return request_bytes(method, target, ["Content-Type: application/json"] + lines, data)


@pytest.mark.parametrize("route", ["v1", "proxy"])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_ambiguous_framing_is_refused_and_nothing_reaches_the_upstream(strict, record, name,
                                                                       route):
    token = tok(name)
    data = refused_request(name, route, token)
    # a request pipelined behind it in the same write: must never run
    data += request_bytes("GET", "/v2/images/after-%s" % token, [])
    with RawConn(strict.port) as c:
        c.send(data)
        resp = c.read_response()
        assert_error(resp, 400)
        assert (resp.header("Connection") or "").lower() == "close", resp
        assert c.closed_by_peer(timeout=10), "connection left open"
        assert c.buf == b"", "a second reply: %r" % c.buf[:200]
    if route == "proxy" and name in IN_BODY:
        flush_through(strict, record)
        seen = [(m, p) for m, p, _ in record.with_token(token)]
        assert seen in ([], [("POST", "/v2/closing/img-%s" % token)]), seen
    else:
        assert_upstream_saw_nothing(strict, record, token)


ACCEPTED = {
    # RFC 9110 8.6 lets a recipient take identical Content-Length fields as
    # one; framing_check does (one list value "n, n" is refused, above).
    "cl-twice-equal": lambda b: ([cl(b), cl(b)], b),
    # the one other spelling libevhtp reads as chunked
    "te-capitalised": lambda b: (["Transfer-Encoding: Chunked"], chunked(b)),
    "te-spaces-before": lambda b: (["Transfer-Encoding:    chunked"], chunked(b)),
    # leading zeros in a chunk size are not an overflow
    "chunk-size-leading-zeros": lambda b: (["Transfer-Encoding: chunked"],
                                           b"%020x\r\n%s\r\n0\r\n\r\n" % (len(b), b)),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_unusual_but_unambiguous_framing_is_served(strict, record, name):
    token = tok(name)
    lines, data = ACCEPTED[name](ADD)
    v1 = request_bytes("PUT", "/v1/images/img-%s/members/m-%s" % (token, token),
                       ["Content-Type: application/json"] + lines, data)
    proxied = request_bytes("POST", "/v2/closing/img-%s" % token,
                            ["Content-Type: application/json"] + lines, data)
    with RawConn(strict.port) as c:
        c.send(v1 + proxied)
        assert c.read_response().status == 204
        assert c.read_response().status == 200
    seen = record.with_token(token)
    assert [(m, p) for m, p, _ in seen] == [("POST", "/v2/images/img-%s/members" % token),
                                            ("POST", "/v2/closing/img-%s" % token)]
    assert json.loads(seen[0][2]) == {"member": "m-" + token}
    # the proxied body's framing upstream is the gateway's: one length
    # or chunked, never both, never the client's duplicate
    framing = [(k.lower(), v) for k, v in record.headers_of_last("/v2/closing/img-%s" % token)
               if k.lower() in ("content-length", "transfer-encoding")]
    assert framing in ([("content-length", str(len(ADD)))],
                       [("transfer-encoding", "chunked")]), framing


# --------------------------------------------------------------------------
# 2. pipelining: different calls in one write, answered in order

def test_pipelined_mixed_calls_answered_in_order(strict, record):
    token = tok("pipeline")
    img = "/v1/images/img-%s/members" % token
    reqs = [
        (request_bytes("PUT", img + "/m1", ["Content-Length: 0"]), "PUT", 204, None),
        (request_bytes("GET", "/v2/pipeline-a/%s" % token, []), "GET", 200, {"n": "a"}),
        (request_bytes("GET", img, []), "GET", 200, {"members": []}),
        (request_bytes("GET", img + "/m1", []), "GET", 405, None),
        (request_bytes("POST", "/v2/pipeline-b/%s" % token,
                       ["Content-Type: application/json", cl(ADD)], ADD), "POST", 201, {"n": "b"}),
        (request_bytes("DELETE", img + "/m1", []), "DELETE", 204, None),
        (request_bytes("HEAD", "/healthcheck", []), "HEAD", 200, None),
        (request_bytes("PUT", img + "/m2", ["Content-Type: application/json",
                                           "Transfer-Encoding: chunked"], chunked(ADD)),
         "PUT", 204, None),
    ]
    with RawConn(strict.port) as c:
        c.send(b"".join(r[0] for r in reqs))
        for i, (_, method, status, body) in enumerate(reqs):
            resp = c.read_response(method)
            assert resp.status == status, (i, resp)
            if body is not None:
                assert resp.json() == body, (i, resp)
    assert [(m, p) for m, p, _ in record.with_token(token)] == [
        ("POST", "/v2/images/img-%s/members" % token),
        ("GET", "/v2/pipeline-a/%s" % token),
        ("GET", "/v2/images/img-%s/members" % token),
        ("POST", "/v2/pipeline-b/%s" % token),
        ("DELETE", "/v2/images/img-%s/members/m1" % token),
        ("POST", "/v2/images/img-%s/members" % token),
    ]


# --------------------------------------------------------------------------
# 3. ids that try to leave their path segment

def _pad_to(prefix, n, unit):
    """prefix + unit repeated so that the decoded id is n bytes."""
    return prefix + unit * (n - len(prefix))


# name -> function(token) -> the id segment as sent (the token is in the
# image id anyway, for the ids that cannot hold it)
BAD_IDS = {
    "crlf-encoded": lambda t: "m-%s%%0d%%0aX-Injected:%%20yes" % t,
    "lf-encoded": lambda t: "m-%s%%0aGET%%20x" % t,
    "cr-encoded": lambda t: "m-%s%%0dx" % t,
    "nul-encoded": lambda t: "m-%s%%00x" % t,
    "tab-encoded": lambda t: "m-%s%%09x" % t,
    "slash-encoded": lambda t: "m-%s%%2Fother" % t,
    "backslash-and-slash": lambda t: "m-%s%%5c..%%2f..%%2fx" % t,
    "dot-dot": lambda t: "..",
    "dot-dot-encoded": lambda t: "%2e%2e",
    "dot-dot-encoded-upper": lambda t: "%2E%2E",
    "dot": lambda t: ".",
    "dot-encoded": lambda t: "%2e",
    "overlong-256": lambda t: _pad_to("m-" + t, 256, "x"),
    "overlong-256-after-decoding": lambda t: "m-" + t + "%41" * (256 - len("m-" + t)),
    "percent-zz": lambda t: "m-%s%%zz" % t,
    "percent-trailing": lambda t: "m-%s%%" % t,
    "percent-one-digit": lambda t: "m-%s%%4" % t,
    "invalid-utf8": lambda t: "m-%s%%ff%%fe" % t,
    "overlong-utf8-slash": lambda t: "m-%s%%c0%%af" % t,
    "del-char": lambda t: "m-%s%%7f" % t,
}


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("name", sorted(BAD_IDS))
def test_bad_member_id_is_400_and_nothing_reaches_the_upstream(strict, record, name, method):
    token = tok(name)
    member = BAD_IDS[name](token)
    target = "/v1/images/img-%s/members/%s" % (token, member)
    with RawConn(strict.port) as c:
        c.send(request_bytes(method, target, ["Content-Length: 0"]))
        resp = c.read_response(method)
        assert_error(resp, 400)
        assert "member id" in resp.json()["error"]["message"], resp
        # a well-framed request: the connection is kept for the next one
        c.send(request_bytes("GET", "/healthcheck", []))
        assert c.read_response("GET").status == 200
    assert_upstream_saw_nothing(strict, record, token)


@pytest.mark.parametrize("name", ["dot-dot", "dot-dot-encoded", "slash-encoded", "nul-encoded",
                                  "crlf-encoded", "percent-zz"])
def test_bad_image_id_is_400_on_every_route(strict, record, name):
    token = tok(name)
    image = BAD_IDS[name](token)   # the token is in the member id or query too
    replace = b'{"memberships": []}'
    targets = [("PUT", "/v1/images/%s/members/m-%s" % (image, token), b""),
               ("DELETE", "/v1/images/%s/members/m-%s" % (image, token), b""),
               ("PUT", "/v1/images/%s/members?x=%s" % (image, token), replace),
               ("GET", "/v1/images/%s/members?x=%s" % (image, token), b"")]
    with RawConn(strict.port) as c:
        for method, target, body in targets:
            c.send(request_bytes(method, target, [cl(body)], body))
            resp = c.read_response(method)
            assert_error(resp, 400)
            assert "image id" in resp.json()["error"]["message"], resp
    assert_upstream_saw_nothing(strict, record, token)


def test_id_of_255_bytes_after_decoding_reaches_the_upstream(strict, record):
    token = tok("len255")
    prefix = "m-" + token
    member = _pad_to(prefix, 255, "A")
    target = "/v1/images/img-%s/members/%s" % (token, prefix + "%41" * (255 - len(prefix)))
    with RawConn(strict.port) as c:
        c.send(request_bytes("PUT", target, ["Content-Length: 0"]))
        assert c.read_response().status == 204
    assert record.with_token(token) == [
        ("POST", "/v2/images/img-%s/members" % token, '{"member":"%s"}' % member)]


def test_dot_segments_are_not_resolved_by_the_gateway(strict, record):
    """Decision: the gateway routes on the raw path and does not resolve
    dot-segments. "/v1/images/../v2/images/X" is not a v1 membership call,
    so it is proxied byte for byte (what it means is the upstream's
    business: the client could have sent /v2/images/X itself); a ".."
    inside an id is refused (above). No request is ever turned into a
    membership call on another image."""
    token = tok("traversal")
    cases = [
        ("GET", "/v1/images/../v2/images/img-%s" % token),
        ("GET", "/v1/images/%%2e%%2e/v2/images/img-%s" % token),
        ("PUT", "/v1/images/img-%s/members/../members/m-%s" % (token, token)),
        ("DELETE", "/v1/images/img-%s/members/m-%s/.." % (token, token)),
        ("GET", "/v2/images/img-%s/../../v1/images/x/members" % token),
    ]
    with RawConn(strict.port) as c:
        for method, target in cases:
            c.send(request_bytes(method, target, ["Content-Length: 0"]))
            resp = c.read_response(method)
            assert resp.status == 200 and resp.json() == {"ok": True}, (target, resp)
    assert [(m, p) for m, p, _ in record.with_token(token)] == cases


# --------------------------------------------------------------------------
# 4. JSON bodies

def bulk(ids, **extra):
    body = {"members": [{"member_id": m} for m in ids]}
    body.update(extra)
    return json.dumps(body).encode()


def put_add(gw, token, body, chunk=False, member=None):
    """PUT /v1/images/img-T/members/<member or m-T> with body; the reply."""
    member = member or "m-" + token
    target = "/v1/images/img-%s/members/%s" % (token, member)
    if chunk:
        lines, data = ["Transfer-Encoding: chunked"], chunked(body, piece=1000)
    else:
        lines, data = [cl(body)], body
    with RawConn(gw.port, timeout=30) as c:
        try:
            c.send(request_bytes("PUT", target, ["Content-Type: application/json"] + lines, data))
        except (BrokenPipeError, ConnectionResetError):
            pass                       # answered early; the reply is still there
        return c.read_response()


def added(record, token):
    """The member ids the upstream was asked to add to img-T."""
    out = []
    for method, path, body in record.with_token(token):
        assert (method, path) == ("POST", "/v2/images/img-%s/members" % token), (method, path)
        # the events file holds the body as latin-1 text
        out.append(json.loads(body.encode("latin-1").decode("utf-8"))["member"])
    return sorted(out)


def nested(depth):
    inner = depth - 3          # the object, the members array, the entry object
    return ('{"members":[{"member_id":"x","pad":%s%s}]}' % ("[" * inner, "]" * inner)).encode()


HUGE_EXP = "1e999999"
HUGE_INT = "9" * 10000

JSON_REFUSED = {
    "nesting-33": nested(33),
    "nesting-33-objects": b'{"members":[{"member_id":"x","pad":' + b'{"a":' * 30 + b"1"
                          + b"}" * 30 + b"}]}",
    "huge-exponent-as-member-id": b'{"members":[{"member_id":%s}]}' % HUGE_EXP.encode(),
    "huge-integer-as-member-id": b'{"members":[{"member_id":%s}]}' % HUGE_INT.encode(),
    "huge-exponent-as-can-share": b'{"member":{"can_share":%s}}' % HUGE_EXP.encode(),
    "huge-integer-as-entry-can-share": b'{"members":[{"member_id":"x","can_share":%s}]}'
                                       % HUGE_INT.encode(),
    "huge-integer-as-members": b'{"members":%s}' % HUGE_INT.encode(),
    "huge-integer-as-body": HUGE_INT.encode(),
    "invalid-utf8-member-id": b'{"members":[{"member_id":"ab\xff\xfe"}]}',
    "overlong-utf8-member-id": b'{"members":[{"member_id":"a\xc0\xafb"}]}',
    "lone-low-surrogate-escape": b'{"members":[{"member_id":"a\\udc00b"}]}',
    # yajl alone would decode a lone high surrogate to "?" and add "a?b"
    "lone-high-surrogate-escape": b'{"members":[{"member_id":"a\\ud800b"}]}',
    "high-surrogate-then-other-escape": b'{"members":[{"member_id":"a\\ud800\\u0041"}]}',
    "nul-escape-member-id": b'{"members":[{"member_id":"a\\u0000b"}]}',
    "one-mib-member-id": b'{"members":[{"member_id":"' + b"m" * (1 << 20) + b'"}]}',
    "one-mib-key-then-bad": b'{"' + b"k" * (1 << 20) + b'": 1, "members": 5}',
    "nan": b'{"members":[{"member_id":"x","can_share":NaN}]}',
    "duplicate-list-key-second-bad": b'{"members":[{"member_id":"a"}],"members":"b"}',
}


@pytest.mark.parametrize("name", sorted(JSON_REFUSED))
def test_bad_json_is_400_and_nothing_reaches_the_upstream(roomy, record, name):
    token = tok(name)
    resp = put_add(roomy, token, JSON_REFUSED[name])
    assert_error(resp, 400)
    assert_upstream_saw_nothing(roomy, record, token)


JSON_ACCEPTED = {
    # unknown keys are ignored (SPEC 1), whatever number they hold:
    # numbers are never converted
    "huge-exponent-in-unknown-key": (b'{"x":%s,"members":[{"member_id":"a","y":%s}]}'
                                     % (HUGE_EXP.encode(), HUGE_EXP.encode()), ["a"]),
    "huge-integer-in-unknown-key": (b'{"members":[{"member_id":"a","n":%s}],"n":-%s}'
                                    % (HUGE_INT.encode(), HUGE_INT.encode()), ["a"]),
    "huge-numbers-in-member-object": (b'{"member":{"can_share":false,"n":%s,"e":%s}}'
                                      % (HUGE_INT.encode(), HUGE_EXP.encode()), []),
    "one-mib-unknown-string": (b'{"pad":"' + b"p" * (1 << 20) + b'","members":[]}', []),
    "nesting-32": (nested(32), ["x"]),
    # Decision (the implementation's, as a dictionary would read the
    # object): a repeated key replaces the earlier value; the path member
    # stays.
    "duplicate-members-key-last-wins": (b'{"members":[{"member_id":"a"}],'
                                        b'"members":[{"member_id":"b"}]}', ["b"]),
    "duplicate-member-id-key-last-wins": (b'{"members":[{"member_id":"a","member_id":"b"}]}',
                                          ["b"]),
    "duplicate-member-ids-sent-once": (b'{"members":[{"member_id":"a"},{"member_id":"a"},'
                                       b'{"member_id":"a"}]}', ["a"]),
    "utf8-member-id": ('{"members":[{"member_id":"t\u00e9n\u00e4nt-\u6f22"}]}'.encode(),
                       ["t\u00e9n\u00e4nt-\u6f22"]),
}


@pytest.mark.parametrize("name", sorted(JSON_ACCEPTED))
def test_unusual_json_is_served(roomy, record, name):
    token = tok(name)
    body, listed = JSON_ACCEPTED[name]
    resp = put_add(roomy, token, body)
    assert resp.status == 204, resp
    # the upstream records a request before answering it: all are in by now
    assert added(record, token) == sorted(["m-" + token] + listed)


def padded_body(size, member):
    """A valid bulk body of exactly size bytes."""
    start = b'{"members":[{"member_id":"%s"}],"pad":"' % member.encode()
    end = b'"}'
    body = start + b"p" * (size - len(start) - len(end)) + end
    assert len(body) == size
    return body


@pytest.mark.parametrize("chunk", [False, True], ids=["content-length", "chunked"])
def test_body_at_max_body_bytes_is_served_one_more_is_413(strict, record, chunk):
    token = tok("at-limit")
    resp = put_add(strict, token, padded_body(MAX_BODY, "a-" + token), chunk=chunk)
    assert resp.status == 204, resp
    assert added(record, token) == sorted(["a-" + token, "m-" + token])

    over = tok("over-limit")
    resp = put_add(strict, over, padded_body(MAX_BODY + 1, "a-" + over), chunk=chunk)
    assert_error(resp, 413)
    assert_upstream_saw_nothing(strict, record, over)


@pytest.mark.parametrize("op", ["add", "replace"])
def test_members_at_max_per_request_are_served_one_more_is_413(strict, record, op):
    token = tok("at-max-" + op)
    if op == "add":   # the path member counts
        ids = ["a%d" % i for i in range(MAX_MEMBERS - 1)]
        resp = put_add(strict, token, bulk(ids))
        assert resp.status == 204, resp
        assert added(record, token) == sorted(ids + ["m-" + token])
    else:
        ids = ["a%d" % i for i in range(MAX_MEMBERS)]
        body = json.dumps({"memberships": [{"member_id": m} for m in ids]}).encode()
        with RawConn(strict.port) as c:
            c.send(request_bytes("PUT", "/v1/images/img-%s/members" % token,
                                 ["Content-Type: application/json", cl(body)], body))
            assert c.read_response().status == 204
        seen = record.with_token(token)
        assert seen[0][:2] == ("GET", "/v2/images/img-%s/members" % token)
        assert sorted(json.loads(b)["member"] for _, _, b in seen[1:]) == sorted(ids)

    over = tok("over-max-" + op)
    if op == "add":
        resp = put_add(strict, over, bulk(["a%d" % i for i in range(MAX_MEMBERS)]))
    else:
        body = json.dumps({"memberships": [{"member_id": "a%d" % i}
                                           for i in range(MAX_MEMBERS + 1)]}).encode()
        with RawConn(strict.port) as c:
            c.send(request_bytes("PUT", "/v1/images/img-%s/members" % over,
                                 ["Content-Type: application/json", cl(body)], body))
            resp = c.read_response()
    assert_error(resp, 413)
    assert_upstream_saw_nothing(strict, record, over)


def test_one_mib_member_id_over_max_body_bytes_is_413(strict, record):
    token = tok("mib-strict")
    resp = put_add(strict, token, JSON_REFUSED["one-mib-member-id"])
    assert_error(resp, 413)
    assert_upstream_saw_nothing(strict, record, token)


# --------------------------------------------------------------------------
# 5. clients that go away

def test_client_gone_mid_body(strict, upstream, record):
    baseline, _, _ = fd_census(strict, upstream.port)
    token = tok("gone-mid-body")
    body = bulk(["a%d" % i for i in range(5)])
    target = "/v1/images/img-%s/members/m-%s" % (token, token)
    heads = [request_bytes("PUT", target, ["Content-Type: application/json", cl(body)]),
             request_bytes("PUT", target, ["Content-Type: application/json",
                                           "Transfer-Encoding: chunked"])]
    halves = [body[:len(body) // 2], chunked(body)[:len(body) // 2]]
    for reset in (False, True):
        for head, half in zip(heads, halves):
            s = socket.create_connection((harness.LOCAL, strict.port))
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
            s.sendall(head + half)
            time.sleep(0.1)
            s.close()
    # the gateway stays up and serves the next client
    with RawConn(strict.port) as c:
        c.send(request_bytes("GET", "/healthcheck", []))
        assert c.read_response("GET").status == 200
    assert_upstream_saw_nothing(strict, record, token)
    wait_fds_back(strict, upstream.port, baseline)


def test_client_gone_mid_fan_out(strict, upstream, record):
    """Bulk add of MAX_MEMBERS against an upstream that takes SLOW_DELAY s
    per add, 4 at a time (concurrency 4); the client goes as the first
    calls are in flight. Observed and asserted: the gateway does not read a
    connection while its request is being answered, so it notices the
    client only when the reply is written: the calls run to the end (every
    member added exactly once, never more) and everything is then freed."""
    baseline, _, _ = fd_census(strict, upstream.port)
    token = tok("gone-mid-fan-out")
    ids = ["a%d" % i for i in range(MAX_MEMBERS - 1)]
    body = bulk(ids)
    s = socket.create_connection((harness.LOCAL, strict.port))
    s.sendall(request_bytes("PUT", "/v1/images/slow-%s/members/m-%s" % (token, token),
                            ["Content-Type: application/json", cl(body)], body))
    harness.wait_until(lambda: record.with_token(token), 10, what="the first upstream calls")
    s.close()
    started = time.monotonic()
    # meanwhile another client is served at once
    with RawConn(strict.port) as c:
        c.send(request_bytes("GET", "/healthcheck", []))
        assert c.read_response("GET").status == 200
    assert time.monotonic() - started < SLOW_DELAY, "the next client waited for the fan-out"
    waves = -(-MAX_MEMBERS // 4)
    harness.wait_until(lambda: len(record.with_token(token)) >= MAX_MEMBERS,
                       waves * SLOW_DELAY + 10, what="the fan-out to finish")
    time.sleep(SLOW_DELAY + 0.5)      # nothing more comes after
    sent = sorted(json.loads(b)["member"] for _, _, b in record.with_token(token))
    assert sent == sorted(ids + ["m-" + token]), sent
    wait_fds_back(strict, upstream.port, baseline, timeout=waves * SLOW_DELAY + 15)


# --------------------------------------------------------------------------
# 6. slow and idle clients (client_timeout = 2 s)

def slow_send(sock, data, interval, stop):
    try:
        for i in range(len(data)):
            if stop.is_set():
                return
            sock.sendall(data[i:i + 1])
            time.sleep(interval)
    except OSError:
        pass                             # cut off: what is being tested


def read_until_closed(sock, timeout):
    """Everything the peer sends until it closes; None if it does not
    close within timeout."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return data
        except socket.timeout:
            return None
        if not chunk:
            return data
        data += chunk
    return None


@pytest.mark.parametrize("part", ["headers", "body"])
def test_slowloris_is_cut_off_by_client_timeout(strict, record, part):
    """A client trickling its headers, or its membership body, one byte
    every 0.25 s (each read well within client_timeout) is answered 408
    and closed in bounded time; another client is served meanwhile."""
    token = tok("slowloris-" + part)
    body = bulk(["a%d" % i for i in range(3)])
    data = request_bytes("PUT", "/v1/images/img-%s/members/m-%s" % (token, token),
                         ["Content-Type: application/json", cl(body)], body)
    split = data.index(b"\r\n\r\n") + 4
    s = socket.create_connection((harness.LOCAL, strict.port))
    stop = threading.Event()
    if part == "body":
        s.sendall(data[:split])          # headers at once, then the body a byte at a time
        slow = data[split:]
    else:
        slow = data
    t0 = time.monotonic()
    sender = threading.Thread(target=slow_send, args=(s, slow, 0.25, stop), daemon=True)
    sender.start()
    try:
        # another client is served meanwhile
        time.sleep(0.5)
        with RawConn(strict.port) as c:
            c.send(request_bytes("PUT", "/v1/images/img-%s/members/other" % token,
                                 ["Content-Length: 0"]))
            assert c.read_response().status == 204
        # headers: client_timeout for the request line, again for the
        # header block; body: client_timeout from the headers' start
        reply = read_until_closed(s, 3 * CLIENT_TIMEOUT + 4)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        sender.join(5)
        s.close()
    assert reply is not None, "still open after %.1f s" % (time.monotonic() - t0)
    assert elapsed < 3 * CLIENT_TIMEOUT + 3, elapsed
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:300]
    assert b'"code":408' in reply, reply[:300]
    assert [p for _, p, _ in record.with_token(token)] == [
        "/v2/images/img-%s/members" % token]          # only the other client's add


@pytest.mark.parametrize("what", ["nothing-sent", "partial-headers", "partial-body"])
def test_stalled_request_gets_408_json(strict, record, what):
    """A client that stops sending (not trickling) is answered 408 with the
    JSON body when client_timeout passes; the reply is not lost in a race
    with libevent's own read timeout (linger.c). With nothing sent at all
    the connection is just closed: there is no request to answer."""
    token = tok("stalled-" + what)
    data = request_bytes("PUT", "/v1/images/img-%s/members/m-%s" % (token, token),
                         ["Content-Type: application/json", cl(ADD)], ADD)
    cut = {"nothing-sent": 0, "partial-headers": data.index(b"\r\n") + 20,
           "partial-body": len(data) - 5}[what]
    with RawConn(strict.port) as c:
        t0 = time.monotonic()
        if cut:
            c.send(data[:cut])
        reply = read_until_closed(c.sock, 2 * CLIENT_TIMEOUT + 4)
        elapsed = time.monotonic() - t0
    assert reply is not None and elapsed < 2 * CLIENT_TIMEOUT + 2, elapsed
    assert elapsed > CLIENT_TIMEOUT - 0.5, elapsed
    if what == "nothing-sent":
        assert reply == b""
    else:
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:300]
        assert b'"code":408' in reply and b"Connection: close" in reply, reply[:300]
    assert_upstream_saw_nothing(strict, record, token)


def test_idle_keepalive_connection_is_closed_after_client_timeout(strict, record):
    token = tok("idle")
    with RawConn(strict.port) as c:
        c.send(request_bytes("PUT", "/v1/images/img-%s/members/m-%s" % (token, token),
                             ["Content-Length: 0"]))
        assert c.read_response().status == 204
        t0 = time.monotonic()
        reply = read_until_closed(c.sock, CLIENT_TIMEOUT + 5)
        elapsed = time.monotonic() - t0
    assert reply == b"", reply
    assert CLIENT_TIMEOUT - 0.5 < elapsed < CLIENT_TIMEOUT + 3, elapsed


# --------------------------------------------------------------------------
# 7. many idle connections, and running out of descriptors

IDLE = 2000


def open_idle(port, n):
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection((harness.LOCAL, port), timeout=10))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def test_thousands_of_idle_connections(roomy, upstream, record):
    assert raise_nofile(IDLE + 500) >= IDLE + 500, "cannot open %d sockets" % IDLE
    baseline, _, _ = fd_census(roomy, upstream.port)
    token = tok("idle-crowd")
    socks = open_idle(roomy.port, IDLE)
    try:
        harness.wait_until(lambda: fd_census(roomy, upstream.port)[1] >= IDLE, 30,
                           what="the gateway to accept %d connections" % IDLE)
        # a normal client is still served, v1 and proxied
        with RawConn(roomy.port) as c:
            c.send(request_bytes("PUT", "/v1/images/img-%s/members/m-%s" % (token, token),
                                 ["Content-Length: 0"]))
            assert c.read_response().status == 204
            c.send(request_bytes("GET", "/v2/images/img-%s" % token, []))
            assert c.read_response("GET").status == 200
        # and the idle ones are still open: the gateway closed none of them
        assert fd_census(roomy, upstream.port)[1] >= IDLE
    finally:
        for s in socks:
            s.close()
    wait_fds_back(roomy, upstream.port, baseline, timeout=30)
    assert [(m, p) for m, p, _ in record.with_token(token)] == [
        ("POST", "/v2/images/img-%s/members" % token), ("GET", "/v2/images/img-%s" % token)]


def test_out_of_descriptors_does_not_spin_and_recovers(make_gateway, upstream, record):
    """The gateway's descriptor limit is lowered to 128 and 300 clients
    connect: accept() fails with EMFILE. libevent would retry at once, in a
    busy loop logging a warning each time (hundreds of thousands of lines a
    second). The gateway pauses accepting instead (server.c
    on_accept_error), logs once, goes on serving the connections it has,
    and accepts the waiting ones once descriptors are free."""
    gw = make_gateway(upstream=upstream, client_timeout=60, workers=1)
    limit = 128
    resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, (limit, limit))
    baseline, _, _ = fd_census(gw, upstream.port)
    token = tok("emfile")
    held = RawConn(gw.port)              # a client connected before the crowd
    socks = open_idle(gw.port, 300)      # completed by the kernel, in the backlog
    try:
        harness.wait_until(lambda: len(os.listdir("/proc/%d/fd" % gw.proc.pid)) >= limit,
                           10, what="the gateway to run out of descriptors")
        cpu0, t0 = cpu_seconds(gw.proc.pid), time.monotonic()
        time.sleep(2)
        busy = (cpu_seconds(gw.proc.pid) - cpu0) / (time.monotonic() - t0)
        assert busy < 0.25, "the gateway used %.0f%% of a core while out of descriptors" % (
            100 * busy)
        # the connection it has is still served: what needs no upstream
        # connection works; what does gets a clear 502 (no descriptor for
        # the upstream socket), not a hang or a crash
        held.send(request_bytes("GET", "/healthcheck", []))
        assert held.read_response("GET").status == 200
        held.send(request_bytes("PUT", "/v1/images/img-%s/members/m-%s" % (token, token),
                                ["Content-Length: 0"]))
        resp = held.read_response()
        assert_error(resp, 502)
        assert "Too many open files" in resp.json()["results"][0]["message"], resp
    finally:
        for s in socks:
            s.close()
    warnings = [ln for ln in gw.stderr_text().splitlines()
                if "accept" in ln and ("Too many open files" in ln or "cannot accept" in ln)]
    assert 1 <= len(warnings) <= 20, warnings[:5] + ["... %d lines" % len(warnings)]
    # descriptors free again: a new client is accepted and served
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/v2/images/img-%s" % token, []))
        assert c.read_response("GET").status == 200
    held.close()
    wait_fds_back(gw, upstream.port, baseline, timeout=20)
