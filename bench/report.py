#!/usr/bin/python3
"""Renders bench/results.json (written by bench/bench.py) as the Markdown
tables of docs/PERFORMANCE.md.

    /usr/bin/python3 bench/report.py [bench/results.json]
"""

import json
import sys
from pathlib import Path


def fmt(v, digits=0):
    return "–" if v is None else ("%.*f" % (digits, v))


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("results.json"))
    r = json.loads(path.read_text())
    m = r.get("machine", {})
    print("Measured %s on %s CPUs (%s), kernel %s%s.\n" % (
        m.get("date", "?"), m.get("cpus", "?"), m.get("cpu", "?"), m.get("kernel", "?"),
        ", quick mode" if r.get("quick") else ""))
    f1 = r.get("fig1")
    if f1:
        print("### 1. Single add (v1 PUT → v2 POST), one worker each\n")
        print("| setup | req/s c1 | req/s c16 | req/s c64 | p50 / p99 c1 (µs) | p50 / p99 c16 (µs) | CPU µs/req |")
        print("|---|---|---|---|---|---|---|")
        for name in ("upstream (limit, TLS)", "upstream, wrk on its own core", "nginx rewrite",
                     "memberbridge"):
            if "%s c16" % name not in f1:
                continue
            row = [f1.get("%s c%d" % (name, c), {}) for c in (1, 16, 64)]
            print("| %s | %s | %s | %s | %s / %s | %s / %s | %s |" % (
                name, fmt(row[0].get("rps")), fmt(row[1].get("rps")), fmt(row[2].get("rps")),
                fmt(row[0].get("p50_us")), fmt(row[0].get("p99_us")),
                fmt(row[1].get("p50_us")), fmt(row[1].get("p99_us")),
                fmt(f1.get("%s cpu_us_per_req" % name), 1)))
        print("\nmemberbridge ÷ nginx rewrite at 16 connections: **%.2f×** (target ≥ 1.0×)."
              % f1["ratio_c16_vs_nginx"])
        for c in (1, 64):
            a, b = f1.get("memberbridge c%d" % c), f1.get("nginx rewrite c%d" % c)
            if a and b:
                print("At %d connection%s: %.2f×." % (c, "" if c == 1 else "s", a["rps"] / b["rps"]))
        print()
    f2 = r.get("fig2")
    if f2:
        print("### 2. Latency added at 1 connection (p50)\n")
        print("memberbridge %s µs − upstream %s µs = **%s µs** added (target ≤ 100 µs); "
              "nginx's rewrite adds %s µs.\n" % (fmt(f2["memberbridge_p50_us"]),
                                                fmt(f2["upstream_p50_us"]), fmt(f2["added_p50_us"]),
                                                fmt(f2["nginx_added_p50_us"])))
    f3 = r.get("fig3_ms")
    if f3:
        print("### 3. Bulk: 1,000 members\n")
        print("| client | wall time (ms) | ÷ memberbridge |")
        print("|---|---|---|")
        base = f3.get("memberbridge bulk PUT")
        for k, v in f3.items():
            print("| %s | %.1f | %.2f× |" % (k, v, v / base if base else 0))
        lim = f3.get("limit (1000 / upstream req/s at c16)")
        own = f3.get("limit, wrk on its own core")
        if lim:
            print("\nmemberbridge ÷ limit: **%.2f×**%s (target ≤ 1.2×); sequential client ÷ "
                  "memberbridge: **%.1f×** (target ≥ 5×).\n" % (
                      base / lim, " (÷ the limit with wrk on its own core: **%.2f×**)" % (base / own)
                      if own else "", f3["sequential v2 client"] / base))
    f4 = r.get("fig4")
    if f4:
        print("### 4. Memory (RSS of the one-worker gateway)\n")
        print("| state | MiB | target |")
        print("|---|---|---|")
        print("| idle, after start | %.1f | ≤ 8 |" % f4["idle_rss_mib"])
        print("| peak, one 100,000-member body | %.1f | ≤ 32 |" % f4["peak_rss_100k_body_mib"])
        print("| peak, 1,000 connections × 1,000-member bodies at once | %.1f | – |"
              % f4["peak_rss_1000_conns_x_1000_members_mib"])
        print()
    f5 = r.get("fig5")
    if f5:
        print("### 5. Instructions per upstream call (callgrind, whole process)\n")
        for k, v in f5.items():
            print("- %s: %s" % (k, fmt(v) if isinstance(v, (int, float)) else v))
        print()
    f6 = r.get("fig6")
    if f6:
        print("### 6. The real Glance (workers = 2), 100 members\n")
        print("| client | wall time (s) |")
        print("|---|---|")
        for k, v in f6.items():
            if k != "gateway_cpu_share_of_glance_pct":
                print("| %s | %.2f |" % (k, v))
        print("\nGateway CPU ÷ Glance CPU during the bulk add: **%.2f%%** (target < 2%%).\n"
              % f6["gateway_cpu_share_of_glance_pct"])


if __name__ == "__main__":
    main()
