#!/usr/bin/python3
"""A scriptable misbehaving upstream for the memberbridge end-to-end tests.

    badupstream.py --mode MODE [--port 0] [--cert C --key K] [--delay S] [--events FILE]
                   [--rules FILE] [--upstream URL [--upstream-ca CA]]

Listens on 127.0.0.1 (port 0 = any free one), prints "READY <port>" on stdout
once it accepts connections, and handles each connection in a thread:

  hang     read the request headers, never answer (keeps the socket open)
  close    close the connection at once, before TLS or any byte
  reset    close at once with an RST (SO_LINGER 0)
  slow     read the request, wait --delay seconds, then answer 200 JSON: a
           Glance-like member object to POST .../members, {"members": []}
           to anything else
  garbage  read the request, answer bytes that are not HTTP, close
  error500 read the request, answer 500 with a JSON error body
  echo     answer 200 with {"method", "path", "headers"} of the request
  rules    answer by the first matching rule of the JSON list in --rules FILE
           (read again for every request, so a test can change it):
           {"method": "PATCH" or "*", "path": <regex matched from the start>,
            "status": 200, "body": <JSON value, or a string sent as is>,
            "headers": {"Name": "value"}, "delay": <seconds>,
            "content_length": <claimed length, to cut a body short>,
            "close": true (close the connection after the answer)}; no match: 404
  relay    forward every request to the real upstream --upstream URL
           (https with --upstream-ca as its CA) and send its answer back,
           except where a rule of --rules FILE matches (below).

With --cert/--key it speaks TLS (the handshake happens in the thread, so
"hang" also covers a peer that completes TLS and then goes silent).
Every accepted connection, request line, request header and (the first 4 KiB
of a) request body is appended to --events ("accept N", "request N METHOD
PATH", "header N Name: value", "body N text").
In slow mode, "inflight N K" records that K requests (this one included)
were being handled at once when connection N's request began its delay; a
request stops counting just before its answer is sent, so a client that
waits for an answer before its next call is never counted twice.

Faults (rules and relay modes). The rules file is either the list of rules
above or an object {"generation": G, "rules": [...], "refuse": BOOL,
"tls": null or {"cert", "key", "client_ca"}}. The object form is watched
while the server runs: "refuse": true closes the listening socket (the port
then refuses connections) and false opens it again on the same port; "tls"
serves new handshakes with that certificate (and, with client_ca, requires a
client certificate signed by it). Either change also closes every open
connection, so that pooled ones cannot dodge the fault. Once applied,
"state G" is appended to the events.

A rule may also say which requests it hits and what goes wrong:
  "members": [M, ...]     only requests about these members: a POST whose
                          JSON body's "member" is one of them, or a path
                          ending in /members/M
  "request_body": REGEX   only requests whose body matches (re.search)
  "times": N              only the first N matching requests (for each
                          member, in a rule with "members")
  "when": "before"        (default) answer without forwarding: in relay mode
                          the request never reaches the real upstream;
          "after"         relay mode: forward first (the upstream did the
                          operation), then answer with the fault
  "fault":
    (none)        answer "status"/"body" as above (after: instead of the
                  real answer)
    "hang"        never answer; keep the connection open
    "close"       close (FIN) before any response byte
    "reset"       RST before any response byte
    "reset_after" send "bytes" bytes (or the head and "body_bytes" bytes of
                  the body) of the answer, then RST
    "slow"        send the answer one byte at a time, each after
                  "byte_delay" seconds
    "truncate"    claim "extra" (default 100) more bytes in Content-Length
                  than the body has, send the body, close; an answer
                  without a body is cut in the middle of its head instead
    "garbage"     send bytes that are not HTTP, close
    "invalid_json" answer "status" (default 200) with a body that is not
                  JSON (well framed, connection kept)
    "huge"        answer 200 with a valid JSON body of "size" bytes
                  (default 65 MiB), streamed
The answer a fault acts on is the rule's "status"/"body" when it has them,
else the real upstream's answer (after), else a Glance-like one (before).
Each fault is recorded as "fault N NAME"; each forwarded request as
"forwarded N METHOD PATH STATUS"; a client certificate as "peer N SUBJECT".
"""

import argparse
import datetime
import http.client
import json
import os
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
EVENTS = None
IN_FLIGHT_LOCK = threading.Lock()  # not LOCK: event() takes that one
IN_FLIGHT = 0

# Connections open now: n -> file descriptor. A handler closes its socket
# while holding LIVE_LOCK, so a descriptor listed here is still its own.
LIVE_LOCK = threading.Lock()
LIVE = {}

# "times": how often each rule of each generation has been used.
HITS_LOCK = threading.Lock()
HITS = {}

HOP_BY_HOP = {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
              "proxy-connection", "proxy-authorization", "proxy-authenticate"}
HUGE_DEFAULT = 65 << 20   # over the gateway's 64 MiB limit for one buffered answer


def in_flight(delta):
    """Add delta to the number of requests being handled; returns the new
    number."""
    global IN_FLIGHT
    with IN_FLIGHT_LOCK:
        IN_FLIGHT += delta
        return IN_FLIGHT


def event(line):
    if EVENTS is None:
        return
    with LOCK:
        with open(EVENTS, "a") as f:
            f.write(line + "\n")


def read_request(conn):
    """Read one request's headers (and a Content-Length body); returns
    (method, path, headers, body) or None on EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            return None
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, path = (parts + ["", ""])[:2]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    length = 0
    for name, value in headers:
        if name.lower() == "content-length" and value.isdigit():
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return method, path, headers, rest[:length]


def slow_answer(method, path, body):
    """What Glance answers: the member object to POST /v2/images/I/members
    {"member": M}, a (here empty) member list to anything else."""
    parts = path.split("?")[0].split("/")
    if method == "POST" and len(parts) == 5 and parts[1:3] == ["v2", "images"] \
            and parts[4] == "members":
        try:
            member = json.loads(body)["member"]
        except (ValueError, KeyError, TypeError):
            member = ""
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"image_id": parts[3], "member_id": member, "status": "pending",
                "created_at": now, "updated_at": now, "schema": "/v2/schemas/member"}
    return {"members": []}


def respond(conn, status, reason, body, close=False):
    raw = json.dumps(body).encode()
    head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n%s\r\n" % (status, reason, len(raw),
                                               "Connection: close\r\n" if close else ""))
    conn.sendall(head.encode() + raw)


# --------------------------------------------------------------------------
# the rules file

def load_state(path):
    """The --rules file as {"generation", "rules", "refuse", "tls"} (a bare
    list is the rules)."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, list):
        data = {"rules": data}
    return {"generation": data.get("generation", 0), "rules": data.get("rules", []),
            "refuse": bool(data.get("refuse")), "tls": data.get("tls")}


def load_state_default():
    return {"generation": 0, "rules": [], "refuse": False, "tls": None}


def request_member(method, path, body):
    """The member a request is about: the "member" of a POST's JSON body, or
    the last segment of a path ending in /members/M; None otherwise."""
    if method == "POST":
        try:
            member = json.loads(body)["member"]
            return member if isinstance(member, str) else None
        except (ValueError, KeyError, TypeError):
            return None
    m = re.search(r"/members/([^/]+)$", path.split("?")[0])
    return urllib.parse.unquote(m.group(1)) if m else None


def rule_matches(rule, method, path, body):
    if rule.get("method", "*") not in ("*", method):
        return False
    if not re.match(rule.get("path", ""), path):
        return False
    if "request_body" in rule and not re.search(rule["request_body"], body.decode("latin-1")):
        return False
    if "members" in rule and request_member(method, path, body) not in rule["members"]:
        return False
    return True


def pick_rule(state, method, path, body):
    """The first rule that matches (and, with "times", is not used up)."""
    for i, rule in enumerate(state["rules"]):
        if not rule_matches(rule, method, path, body):
            continue
        if "times" in rule:
            key = (state["generation"], i,
                   request_member(method, path, body) if "members" in rule else None)
            with HITS_LOCK:
                if HITS.get(key, 0) >= rule["times"]:
                    continue
                HITS[key] = HITS.get(key, 0) + 1
        return rule
    return None


def rule_response(rule):
    """The bytes of the answer a rule describes (status, body, headers,
    content_length)."""
    body = rule.get("body", {})
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    extra = "".join("%s: %s\r\n" % kv for kv in rule.get("headers", {}).items())
    status = int(rule.get("status", 200))
    head = ("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (status, rule.get("content_length", len(raw)), extra))
    return head.encode(), raw


def rule_answer(conn, rules_path, method, path):
    """rules mode without a fault: the first matching rule's answer; returns
    False when the connection is to be closed."""
    try:
        state = load_state(rules_path)
    except (OSError, ValueError) as e:
        respond(conn, 500, "Internal Server Error", {"message": "bad rules: %s" % e})
        return True
    for rule in state["rules"]:
        if rule.get("method", "*") not in ("*", method):
            continue
        if not re.match(rule.get("path", ""), path):
            continue
        time.sleep(rule.get("delay", 0))
        head, raw = rule_response(rule)
        conn.sendall(head + raw)
        return not rule.get("close")
    respond(conn, 404, "Not Found", {"message": "no rule for %s %s" % (method, path)})
    return True


# --------------------------------------------------------------------------
# the relay: one keep-alive connection to the real upstream per connection
# of the gateway

class Forwarder:
    def __init__(self, url, ca):
        u = urllib.parse.urlsplit(url)
        self.https = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.prefix = u.path.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca) if self.https else None
        self.conn = None
        self.used = 0

    def _connect(self):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)
        return http.client.HTTPConnection(self.host, self.port, timeout=120)

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn, self.used = None, 0

    def send(self, method, path, headers, body):
        """Forwards one request; returns (status, reason, headers, body). A
        reused connection the upstream closed meanwhile is tried once more
        on a new one."""
        while True:
            reused = self.used > 0
            if self.conn is None:
                self.conn = self._connect()
            try:
                return self._exchange(method, path, headers, body)
            except (OSError, http.client.HTTPException):
                self.close()
                if not reused:
                    raise

    def _exchange(self, method, path, headers, body):
        c = self.conn
        c.putrequest(method, self.prefix + path, skip_host=True, skip_accept_encoding=True)
        c.putheader("Host", "%s:%d" % (self.host, self.port))
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("host", "content-length"):
                c.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body if body else None)
        resp = c.getresponse()
        data = resp.read()
        self.used += 1
        out = [(k, v) for k, v in resp.getheaders()
               if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
        if resp.will_close:
            self.close()
        return resp.status, resp.reason, out, data


def response_bytes(status, reason, headers, body):
    head = "HTTP/1.1 %d %s\r\n" % (status, reason or "X")
    head += "".join("%s: %s\r\n" % kv for kv in headers)
    if status not in (204, 304):
        head += "Content-Length: %d\r\n" % len(body)
    return (head + "\r\n").encode("latin-1"), body


# --------------------------------------------------------------------------
# faults

def send_rst(conn):
    """Close with an RST: SO_LINGER 0, then close (no TLS close_notify)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def drain(conn):
    """Read (and ignore) until the peer closes."""
    try:
        while conn.recv(65536):
            pass
    except (OSError, ssl.SSLError):
        pass


def send_huge(conn, size):
    """200 with a valid JSON body of size bytes: {"members": ["xxx", ...]}."""
    conn.sendall(("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  "Content-Length: %d\r\n\r\n" % size).encode())
    opening, closing = b'{"members": [', b'"end"]}'
    item = b'"' + b"x" * 1022 + b'",'   # 1 KiB per list entry
    block = item * 1024                   # 1 MiB
    left = size - len(opening) - len(closing)
    conn.sendall(opening)
    while left >= len(block):
        conn.sendall(block)
        left -= len(block)
    conn.sendall(item * (left // len(item)) + b" " * (left % len(item)) + closing)


def deliver(conn, rule, head, body):
    """Sends the answer head+body with the rule's fault; returns True when
    the connection may carry the next request."""
    fault = rule.get("fault")
    wire = head + body
    if fault is None:
        conn.sendall(wire)
        return not rule.get("close")
    if fault == "hang":
        drain(conn)
        return False
    if fault == "close":
        return False
    if fault == "reset":
        send_rst(conn)
        return False
    if fault == "reset_after":
        n = rule["bytes"] if "bytes" in rule else len(head) + rule.get("body_bytes", 0)
        if n >= len(wire):
            n = len(wire) // 2
        conn.sendall(wire[:n])
        time.sleep(0.1)     # let the peer read them before the RST
        send_rst(conn)
        return False
    if fault == "slow":
        for i in range(len(wire)):
            time.sleep(rule.get("byte_delay", 0.05))
            conn.sendall(wire[i:i + 1])
        return True
    if fault == "truncate":
        if not body:
            conn.sendall(head[:len(head) // 2])
            return False
        claimed = len(body) + rule.get("extra", 100)
        head = re.sub(rb"(?im)^content-length:[^\r]*\r\n", b"", head)
        head = head[:-2] + b"Content-Length: %d\r\n\r\n" % claimed
        conn.sendall(head + body)
        return False
    if fault == "garbage":
        conn.sendall(b"THIS IS NOT HTTP\r\n\r\n\x00\x01\x02")
        return False
    if fault == "invalid_json":
        raw = b'{"member_id": "x", "status": pend'   # cut short: not JSON
        conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (int(rule.get("status", 200)), len(raw)) + raw)
        return True
    if fault == "huge":
        send_huge(conn, int(rule.get("size", HUGE_DEFAULT)))
        return True
    conn.sendall(b"HTTP/1.1 500 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    return False


def fault_answer(conn, n, args, forwarder, method, path, headers, body):
    """rules and relay modes: forward and/or apply the matching rule's
    fault. Returns True when the connection may carry the next request."""
    try:
        state = load_state(args.rules) if args.rules else load_state_default()
    except (OSError, ValueError) as e:
        respond(conn, 500, "Internal Server Error", {"message": "bad rules: %s" % e})
        return True
    rule = pick_rule(state, method, path, body)
    if rule is None and forwarder is None:
        respond(conn, 404, "Not Found", {"message": "no rule for %s %s" % (method, path)})
        return True
    real = None
    if forwarder is not None and (rule is None or rule.get("when", "before") == "after"):
        try:
            real = forwarder.send(method, path, headers, body)
        except (OSError, http.client.HTTPException) as e:
            event("error %d forwarding %s %s: %s" % (n, method, path, e))
            respond(conn, 502, "Bad Gateway", {"message": "relay: %s" % e}, close=True)
            return False
        event("forwarded %d %s %s %d" % (n, method, path, real[0]))
    if rule is None:
        conn.sendall(b"".join(response_bytes(*real)))
        return True
    event("fault %d %s" % (n, rule.get("fault") or "answer"))
    time.sleep(rule.get("delay", 0))
    if "status" in rule or "body" in rule:
        head, raw = rule_response(rule)
    elif real is not None:
        head, raw = response_bytes(*real)
    else:
        head, raw = response_bytes(200, "OK", [("Content-Type", "application/json")],
                                   json.dumps(slow_answer(method, path, body)).encode())
    return deliver(conn, rule, head, raw)


# --------------------------------------------------------------------------
# connections

def handle(raw, ctx, args, n):
    conn = raw
    forwarder = Forwarder(args.upstream, args.upstream_ca) if args.mode == "relay" else None
    with LIVE_LOCK:
        LIVE[n] = raw.fileno()
    try:
        if args.mode == "close":
            return
        if args.mode == "reset":
            send_rst(raw)
            return
        if ctx is not None:
            conn = ctx.wrap_socket(raw, server_side=True)
            peer = conn.getpeercert()
            if peer:
                event("peer %d %s" % (n, dict(x[0] for x in peer.get("subject", ()))))
        while True:
            req = read_request(conn)
            if req is None:
                return
            method, path, headers, body = req
            event("request %d %s %s" % (n, method, path))
            for name, value in headers:
                event("header %d %s: %s" % (n, name, value))
            if body:
                event("body %d %s" % (n, body[:4096].decode("latin-1").replace("\n", " ")))
            if args.mode == "hang":
                while conn.recv(65536):
                    pass
                return
            if args.mode == "slow":
                event("inflight %d %d" % (n, in_flight(+1)))
                try:
                    time.sleep(args.delay)
                    answer = slow_answer(method, path, body)
                finally:
                    in_flight(-1)
                respond(conn, 200, "OK", answer)
            elif args.mode == "garbage":
                conn.sendall(b"THIS IS NOT HTTP\r\n\r\n\x00\x01\x02")
                return
            elif args.mode == "error500":
                respond(conn, 500, "Internal Server Error",
                        {"code": 500, "title": "Internal Server Error", "message": "badupstream"})
            elif args.mode == "rules" and not uses_faults(args.rules):
                if not rule_answer(conn, args.rules, method, path):
                    return
            elif args.mode in ("rules", "relay"):
                if not fault_answer(conn, n, args, forwarder, method, path, headers, body):
                    return
            elif args.mode == "echo":
                respond(conn, 200, "OK", {"method": method, "path": path,
                                          "headers": [[k, v] for k, v in headers]})
            else:
                respond(conn, 500, "Internal Server Error", {"message": "unknown mode"}, close=True)
                return
    except (OSError, ssl.SSLError) as e:
        event("error %d %s" % (n, e))
    finally:
        if forwarder is not None:
            forwarder.close()
        with LIVE_LOCK:
            LIVE.pop(n, None)
            try:
                conn.close()
            except OSError:
                pass


def uses_faults(rules_path):
    """rules mode: whether the rules file uses the fault language (the
    object form, or a rule with a fault, a member filter or a count); the
    plain list keeps its original handling."""
    try:
        with open(rules_path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    if isinstance(data, dict):
        return True
    keys = ("fault", "members", "request_body", "times", "when")
    return any(isinstance(r, dict) and any(k in r for k in keys) for r in data)


def drop_connections():
    """Closes (FIN both ways) every open connection: their handlers see EOF."""
    with LIVE_LOCK:
        for fd in LIVE.values():
            try:
                s = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def server_context(spec, cache={}):
    """The TLS server context for a "tls" state ({"cert", "key",
    "client_ca"}), made once per distinct spec."""
    key = json.dumps(spec, sort_keys=True)
    if key not in cache:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(spec["cert"], spec["key"])
        if spec.get("client_ca"):
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(spec["client_ca"])
        cache[key] = ctx
    return cache[key]


def listen(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(128)
    return srv


class Server:
    """The listening socket, the TLS context new connections get, and the
    state of the --rules file that was applied last."""

    def __init__(self, args):
        self.args = args
        self.default_ctx = None
        if args.cert:
            self.default_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.default_ctx.load_cert_chain(args.cert, args.key)
        self.ctx = self.default_ctx
        self.srv = listen(args.port)
        self.port = self.srv.getsockname()[1]
        self.refuse = False
        self.tls = None
        self.stamp = None
        self.watch = args.mode in ("rules", "relay") and args.rules

    def poll_state(self):
        """Applies the rules file's refuse/tls when it changed."""
        try:
            st = os.stat(self.args.rules)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self.stamp:
                return
            state = load_state(self.args.rules)
        except (OSError, ValueError):
            return
        if state["tls"] != self.tls:
            self.ctx = server_context(state["tls"]) if state["tls"] else self.default_ctx
            self.tls = state["tls"]
            drop_connections()
        if state["refuse"] and self.srv is not None:
            self.srv.close()
            self.srv = None
            drop_connections()
        if not state["refuse"] and self.srv is None:
            try:
                self.srv = listen(self.port)
            except OSError as e:
                event("error reopening port %d: %s" % (self.port, e))
                return          # tried again on the next poll
        self.refuse = state["refuse"]
        self.stamp = stamp
        event("state %d" % state["generation"])

    def serve(self):
        n = 0
        while True:
            if self.watch:
                self.poll_state()
            if self.srv is None:
                time.sleep(0.02)
                continue
            ready, _, _ = select.select([self.srv], [], [], 0.02 if self.watch else None)
            if not ready:
                continue
            raw, _ = self.srv.accept()
            n += 1
            event("accept %d" % n)
            threading.Thread(target=handle, args=(raw, self.ctx, self.args, n), daemon=True).start()


def main():
    global EVENTS
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True,
                   choices=["hang", "close", "reset", "slow", "garbage", "error500", "echo",
                            "rules", "relay"])
    p.add_argument("--rules")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--delay", type=float, default=5.0)
    p.add_argument("--events")
    p.add_argument("--upstream", help="relay mode: the real upstream's URL")
    p.add_argument("--upstream-ca", help="relay mode: the CA file for an https upstream")
    args = p.parse_args()
    EVENTS = args.events
    if args.mode == "relay" and not args.upstream:
        p.error("--mode relay needs --upstream")

    server = Server(args)
    print("READY %d" % server.port, flush=True)
    server.serve()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
