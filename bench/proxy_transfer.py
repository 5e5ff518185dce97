#!/usr/bin/python3
"""Image data through the gateway next to the same transfer straight to the
upstream, in one run: a real Glance behind nginx (TLS), the gateway in front.

    /usr/bin/python3 bench/proxy_transfer.py --binary build/src/memberbridge [--gib 2] [--rounds 2]

For each round: upload SIZE bytes to a new image straight to the upstream
(https://nginx -> Glance) and through the gateway (http://gateway -> https://
nginx -> Glance), then download each. Prints MiB/s per transfer, the
gateway/direct ratio (median of the rounds) and the gateway's peak RSS
(sampled from /proc every 50 ms). The client is python-requests in this
process for both paths, so the client's own cost is the same on both sides.
Not a test: nothing is asserted; the numbers are for the notes.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import harness  # noqa: E402


class PeakRss:
    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            with open("/proc/%d/status" % self.pid) as f:
                kb = int([ln for ln in f if ln.startswith("VmRSS")][0].split()[1])
            self.peak = max(self.peak, kb)
            time.sleep(0.05)

    def done(self):
        self.stop = True
        self.t.join(2)
        return self.peak / 1024.0


def transfer(base, owner, size, block, verify):
    h = harness.glance_headers(owner)
    r = requests.post(base + "/v2/images", headers=h, verify=verify, timeout=60,
                      json={"name": harness.unique("bench"), "disk_format": "raw",
                            "container_format": "bare"})
    r.raise_for_status()
    image = r.json()["id"]
    up_h = dict(h, **{"Content-Type": "application/octet-stream"})
    t0 = time.monotonic()
    r = requests.put(base + "/v2/images/%s/file" % image, headers=up_h, verify=verify,
                     data=harness.RepeatingBody(size, block), timeout=1800)
    up = time.monotonic() - t0
    assert r.status_code == 204, r.text
    t0 = time.monotonic()
    n = 0
    with requests.get(base + "/v2/images/%s/file" % image, headers=h, verify=verify, stream=True,
                      timeout=1800) as r:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            n += len(chunk)
    down = time.monotonic() - t0
    assert n == size, (n, size)
    requests.delete(base + "/v2/images/%s" % image, headers=h, verify=verify, timeout=60)
    mib = size / 2 ** 20
    return mib / up, mib / down


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--gib", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    a = p.parse_args()
    size = int(a.gib * 2 ** 30)
    stack = harness.Stack(os.path.abspath(a.binary), level="info", access_log="off",
                          workers=a.workers)
    try:
        owner = harness.unique("bench")
        block = os.urandom(4 << 20)
        rss = PeakRss(stack.gateway.proc.pid)
        rows = {"direct": [], "gateway": []}
        for i in range(a.rounds):
            for name, base, verify in (("direct", stack.tls.url, str(stack.pki.ca_cert)),
                                       ("gateway", stack.gateway.url, True)):
                up, down = transfer(base, owner, size, block, verify)
                rows[name].append((up, down))
                print("round %d %-7s upload %7.1f MiB/s  download %7.1f MiB/s" % (i + 1, name, up, down),
                      flush=True)
        peak = rss.done()
        med = {k: (statistics.median(u for u, _ in v), statistics.median(d for _, d in v))
               for k, v in rows.items()}
        print("\n%.2f GiB, median of %d rounds (MiB/s):" % (a.gib, a.rounds))
        print("  upload:   direct %.1f, gateway %.1f, ratio %.2f"
              % (med["direct"][0], med["gateway"][0], med["gateway"][0] / med["direct"][0]))
        print("  download: direct %.1f, gateway %.1f, ratio %.2f"
              % (med["direct"][1], med["gateway"][1], med["gateway"][1] / med["direct"][1]))
        print("  gateway peak RSS: %.1f MiB" % peak)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
