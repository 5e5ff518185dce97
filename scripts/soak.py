#!/usr/bin/python3
"""A bounded soak: mixed v1 membership traffic through the gateway to a real
Glance, with random upstream faults, for a few minutes on loopback.

    /usr/bin/python3 scripts/soak.py --binary build/src/memberbridge [--minutes 5]
        [--images 8] [--fault-rate 0.05] [--workers 2] [--json FILE]

The stack: a real Glance (Debian's packages) behind nginx TLS, a chaos relay
in front of nginx (TCP, so TLS passes through it untouched), and the gateway
with the relay as its upstream. The relay injects faults per connection and
per chunk of the upstream's answer: refusing a connection, resetting it (RST)
in the middle of an answer, or stalling it past the gateway's
request_timeout. Every fault is one the gateway meets in production.

One client thread per image sends, in random order: single adds, bulk adds
(up to 20 members), replaces, single deletes, member lists and shared-images
calls. Each thread keeps a model of its image's members from what the
gateway reported: a member operation reported done fixes the member's
state; one reported not done leaves it unknown (the fault may have hit after
Glance did the work). Checks:

  - every reply is one SPEC section 2 allows (204/200, 404 for a delete of
    a non-member, 502/504 with a results body naming every member, never a
    5xx without a body or a dropped connection to the client);
  - every member list the gateway returns agrees with the model;
  - after the run (faults off), Glance's member lists, read straight from
    Glance, agree with the model for every member whose state is known,
    then the same replace sent once more converges (204) to the model;
  - the gateway's RSS and open descriptors, sampled every second, stay flat:
    the last fifth of the run is compared with the second fifth (the first
    is warm-up).

Prints the figures and "soak: ok" or "soak: FAILED (...)"; exits 0/1. Not
part of the README's test command (it runs for minutes); its figures are in
docs/RELIABILITY.md.
"""

import argparse
import json
import os
import random
import select
import signal
import socket
import statistics
import subprocess
import struct
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import harness  # noqa: E402

POOL = ["m%02d" % i for i in range(30)]       # member ids each image draws from


# --------------------------------------------------------------------------
# the chaos relay

class ChaosRelay:
    """TCP relay 127.0.0.1:port -> target port, injecting faults at random.

    Per accepted connection: refuse (close at once) with probability
    rate/2. Per chunk the target sends back: reset both sides (RST) with
    probability rate, or stall (stop forwarding for stall_s) with
    probability rate/4. set_rate(0) turns faults off."""

    def __init__(self, target_port, rate, stall_s, seed):
        self.target_port, self.rate, self.stall_s = target_port, rate, stall_s
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.counts = {"connections": 0, "refused": 0, "reset": 0, "stalled": 0}
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def set_rate(self, rate):
        self.rate = rate

    def _roll(self, p):
        with self.rng_lock:
            return self.rng.random() < p

    def _count(self, what):
        with self.rng_lock:
            self.counts[what] += 1

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self._count("connections")
            if self._roll(self.rate / 2):
                self._count("refused")
                _reset(c)
                continue
            threading.Thread(target=self._relay, args=(c,), daemon=True).start()

    def _relay(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            _reset(c)
            return
        u.settimeout(None)
        socks = [c, u]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 120)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is u:        # the upstream's answer: fault it here
                        if self._roll(self.rate):
                            self._count("reset")
                            return _reset(c, u)
                        if self._roll(self.rate / 4):
                            self._count("stalled")
                            time.sleep(self.stall_s)
                        c.sendall(data)
                    else:
                        u.sendall(data)
        except OSError:
            pass
        finally:
            c.close()
            u.close()

    def stop(self):
        self.stopping = True
        self.sock.close()


def _reset(*socks):
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# one client thread per image

class ImageClient:
    """Drives one image; its model maps member -> True (a member), False (not
    a member) or None (unknown: an operation on it was not done)."""

    def __init__(self, gw_url, glance, owner, seed):
        self.gw_url, self.glance, self.owner = gw_url, glance, owner
        self.image = glance.create_image(owner, "shared")
        self.model = {m: False for m in POOL}
        self.rng = random.Random(seed)
        self.session = requests.Session()
        self.stats = {}
        self.errors = []

    def call(self, method, path, body=None):
        return harness.v1(self.gw_url, method, path, self.owner, body=body, timeout=60,
                          session=self.session)

    def note(self, op, status):
        key = "%s %d" % (op, status)
        self.stats[key] = self.stats.get(key, 0) + 1

    def fail(self, msg):
        self.errors.append("%s: %s" % (self.image, msg))

    def apply_results(self, op, r, expected_members):
        """A member call answered: 204 fixes every member; an error reply
        must name each operation, and fixes the done ones."""
        self.note(op, r.status_code)
        if r.status_code == 204:
            return True
        if r.status_code not in (502, 504):
            self.fail("%s answered %d: %s" % (op, r.status_code, r.text[:300]))
            return False
        try:
            body = r.json()
            # A replace whose first GET failed made no member call: no results.
            results = body.get("results", []) if op == "replace" else body["results"]
        except (ValueError, KeyError, AttributeError):
            self.fail("%s %d without a results body: %r" % (op, r.status_code, r.text[:300]))
            return False
        named = {x["member_id"] for x in results}
        if not expected_members <= named:
            self.fail("%s %d results miss %s" % (op, r.status_code,
                                                sorted(expected_members - named)))
        for x in results:
            want = x["action"] == "add"
            self.model[x["member_id"]] = want if x["done"] else None
        return False

    def step(self):
        kind = self.rng.choice(["add", "add", "bulk", "bulk", "replace", "delete",
                                "list", "list", "shared"])
        img = self.image
        if kind == "add":
            m = self.rng.choice(POOL)
            r = self.call("PUT", "/v1/images/%s/members/%s" % (img, m))
            if self.apply_results("add", r, {m}):
                self.model[m] = True
        elif kind == "bulk":
            ms = self.rng.sample(POOL, self.rng.randint(2, 20))
            r = self.call("PUT", "/v1/images/%s/members/%s" % (img, ms[0]),
                          body={"members": [{"member_id": m, "can_share": False}
                                            for m in ms[1:]]})
            if self.apply_results("bulk", r, set(ms)):
                for m in ms:
                    self.model[m] = True
        elif kind == "replace":
            ms = set(self.rng.sample(POOL, self.rng.randint(0, 12)))
            r = self.call("PUT", "/v1/images/%s/members" % img,
                          body={"memberships": [{"member_id": m} for m in sorted(ms)]})
            # Only the members that change are named; unknown ones may be.
            if self.apply_results("replace", r, set()):
                for m in POOL:
                    self.model[m] = m in ms
        elif kind == "delete":
            m = self.rng.choice(POOL)
            r = self.call("DELETE", "/v1/images/%s/members/%s" % (img, m))
            self.note("delete", r.status_code)
            if r.status_code in (204, 404):
                if r.status_code == 404 and self.model[m] is True:
                    self.fail("delete of %s answered 404 but it was a member" % m)
                # 204 for a non-member is allowed: a DELETE sent again after
                # its connection was lost may have removed it the first time,
                # so the gateway reports the outcome (not a member), not a
                # guess about before.
                self.model[m] = False
            elif r.status_code in (502, 504):
                self.model[m] = None
            else:
                self.fail("delete answered %d: %s" % (r.status_code, r.text[:300]))
        elif kind == "list":
            r = self.call("GET", "/v1/images/%s/members" % img)
            self.note("list", r.status_code)
            if r.status_code == 200:
                self.check_listed({x["member_id"] for x in r.json()["members"]}, "v1 list")
            elif r.status_code not in (502, 504):
                self.fail("list answered %d: %s" % (r.status_code, r.text[:300]))
        else:
            m = self.rng.choice(POOL)
            r = self.call("GET", "/v1/shared-images/%s" % m)
            self.note("shared", r.status_code)
            if r.status_code not in (200, 502, 504):
                self.fail("shared-images answered %d: %s" % (r.status_code, r.text[:300]))

    def check_listed(self, listed, where):
        for m, state in self.model.items():
            if state is True and m not in listed:
                self.fail("%s: %s should be a member, is not" % (where, m))
            if state is False and m in listed:
                self.fail("%s: %s should not be a member, is" % (where, m))

    def run(self, deadline):
        while time.monotonic() < deadline and len(self.errors) < 20:
            try:
                self.step()
            except requests.RequestException as e:
                self.fail("the gateway dropped a call: %s" % e)


# --------------------------------------------------------------------------
# sampling the gateway

def proc_sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = int([ln for ln in f if ln.startswith("VmRSS")][0].split()[1]) / 1024.0
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def drift(samples, index):
    """(median of the second fifth, median of the last fifth) of one field."""
    n = len(samples)
    early = [s[index] for s in samples[n // 5: 2 * n // 5]] or [samples[0][index]]
    late = [s[index] for s in samples[4 * n // 5:]] or [samples[-1][index]]
    return statistics.median(early), statistics.median(late)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="build/src/memberbridge")
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()

    def terminated(signum, frame):
        harness.stop_all()           # Glance, nginx and the gateway go too
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, terminated)

    pki = harness.PKI()
    glance = harness.Glance(quota=128, name="soak-glance").start()
    tls = harness.TlsTerminator(pki, glance.port, name="soak-nginx").start()
    relay = ChaosRelay(tls.port, args.fault_rate, stall_s=3.0, seed=args.seed)
    gw = harness.Gateway(Path(args.binary).resolve(), "https://127.0.0.1:%d" % relay.port,
                         pki.ca_cert, name="soak-gateway", workers=args.workers,
                         request_timeout=2, connect_timeout=2, retries=2, concurrency=8,
                         level="warning", access_log="off").start()
    failures = []
    try:
        owner = harness.unique("soak")
        clients = [ImageClient(gw.url, glance, owner, args.seed * 1000 + i)
                   for i in range(args.images)]
        samples = []
        deadline = time.monotonic() + args.minutes * 60
        threads = [threading.Thread(target=c.run, args=(deadline,), daemon=True)
                   for c in clients]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            samples.append((time.monotonic() - t0,) + proc_sample(gw.proc.pid))
            time.sleep(1)
        ran_s = time.monotonic() - t0

        # Faults off: Glance's own state against the model, then converge.
        relay.set_rate(0)
        known = unknown = 0
        for c in clients:
            in_glance = glance.v2_members(c.image, owner)
            c.check_listed(in_glance, "Glance after the run")
            known += sum(1 for s in c.model.values() if s is not None)
            unknown += sum(1 for s in c.model.values() if s is None)
            target = {m for m, s in c.model.items() if s}
            r = c.call("PUT", "/v1/images/%s/members" % c.image,
                       body={"memberships": [{"member_id": m} for m in sorted(target)]})
            if r.status_code != 204:
                c.fail("the final replace answered %d: %s" % (r.status_code, r.text[:300]))
            elif glance.v2_members(c.image, owner) != target:
                c.fail("after the final replace Glance has %s, not %s"
                       % (sorted(glance.v2_members(c.image, owner)), sorted(target)))
        for c in clients:
            failures += c.errors

        stats = {}
        for c in clients:
            for k, v in c.stats.items():
                stats[k] = stats.get(k, 0) + v
        calls = sum(stats.values())
        rss_early, rss_late = drift(samples, 1)
        fd_early, fd_late = drift(samples, 2)
        rss_max = max(s[1] for s in samples)
        fd_max = max(s[2] for s in samples)
        if not gw.alive():
            failures.append("the gateway died")
        # ASan holds freed memory in its quarantine (up to 256 MiB): RSS
        # drift means something only for a build without it
        asan = b"libasan" in subprocess.run(["ldd", gw.binary], capture_output=True).stdout
        if not asan and rss_late > rss_early * 1.10 + 2.0:
            failures.append("RSS grew: %.1f -> %.1f MiB" % (rss_early, rss_late))
        if fd_late > fd_early + 16:
            failures.append("open descriptors grew: %d -> %d" % (fd_early, fd_late))
        figures = {
            "minutes": round(ran_s / 60, 2), "images": args.images, "v1_calls": calls,
            "calls_per_s": round(calls / ran_s, 1), "replies": dict(sorted(stats.items())),
            "relay": relay.counts, "members_known_at_end": known,
            "members_unknown_at_end": unknown,
            "rss_checked": not asan,
            "rss_mib": {"second_fifth": round(rss_early, 1), "last_fifth": round(rss_late, 1),
                        "max": round(rss_max, 1)},
            "fds": {"second_fifth": fd_early, "last_fifth": fd_late, "max": fd_max},
            "failures": failures,
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        relay.stop()
        code, in_time = gw.stop()
        tls.stop()
        glance.stop()
    if code != 0 or not in_time:
        failures.append("the gateway's exit on SIGTERM: %s (in time: %s)" % (code, in_time))
    # after the exit: LeakSanitizer reports then
    errors = harness.sanitizer_errors(gw.stderr_text())
    if errors:
        failures.append("sanitizer report in the gateway's log: %s" % errors[0])
    if failures:
        print("soak: FAILED (%d problems)\n  %s" % (len(failures), "\n  ".join(failures[:40])))
        return 1
    print("soak: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
