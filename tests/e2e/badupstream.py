#!/usr/bin/python3
"""A scriptable misbehaving upstream for the memberbridge end-to-end tests.

    badupstream.py --mode MODE [--port 0] [--cert C --key K] [--delay S] [--events FILE]

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

With --cert/--key it speaks TLS (the handshake happens in the thread, so
"hang" also covers a peer that completes TLS and then goes silent).
Every accepted connection, request line, request header and (the first 4 KiB
of a) request body is appended to --events ("accept N", "request N METHOD
PATH", "header N Name: value", "body N text").
In slow mode, "inflight N K" records that K requests (this one included)
were being handled at once when connection N's request began its delay; a
request stops counting just before its answer is sent, so a client that
waits for an answer before its next call is never counted twice.
"""

import argparse
import datetime
import json
import re
import socket
import ssl
import sys
import threading
import time

LOCK = threading.Lock()
EVENTS = None
IN_FLIGHT_LOCK = threading.Lock()  # not LOCK: event() takes that one
IN_FLIGHT = 0


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


def rule_answer(conn, rules_path, method, path):
    try:
        with open(rules_path) as f:
            rules = json.load(f)
    except (OSError, ValueError) as e:
        respond(conn, 500, "Internal Server Error", {"message": "bad rules: %s" % e})
        return
    for rule in rules:
        if rule.get("method", "*") not in ("*", method):
            continue
        if not re.match(rule.get("path", ""), path):
            continue
        time.sleep(rule.get("delay", 0))
        body = rule.get("body", {})
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        extra = "".join("%s: %s\r\n" % kv for kv in rule.get("headers", {}).items())
        status = int(rule.get("status", 200))
        head = ("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                % (status, rule.get("content_length", len(raw)), extra))
        conn.sendall(head.encode() + raw)
        return not rule.get("close")
    respond(conn, 404, "Not Found", {"message": "no rule for %s %s" % (method, path)})
    return True


def handle(raw, ctx, args, n):
    conn = raw
    try:
        if args.mode == "close":
            raw.close()
            return
        if args.mode == "reset":
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            raw.close()
            return
        if ctx is not None:
            conn = ctx.wrap_socket(raw, server_side=True)
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
            elif args.mode == "rules":
                if not rule_answer(conn, args.rules, method, path):
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
        try:
            conn.close()
        except OSError:
            pass


def main():
    global EVENTS
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True,
                   choices=["hang", "close", "reset", "slow", "garbage", "error500", "echo",
                            "rules"])
    p.add_argument("--rules")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--delay", type=float, default=5.0)
    p.add_argument("--events")
    args = p.parse_args()
    EVENTS = args.events

    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(128)
    print("READY %d" % srv.getsockname()[1], flush=True)

    n = 0
    while True:
        raw, _ = srv.accept()
        n += 1
        event("accept %d" % n)
        threading.Thread(target=handle, args=(raw, ctx, args, n), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
