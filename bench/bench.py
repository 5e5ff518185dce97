#!/usr/bin/python3
"""The memberbridge benchmark suite: the gateway side by side with what an
operator would use instead, in one run. See docs/PERFORMANCE.md.

    /usr/bin/python3 bench/bench.py --binary build/src/memberbridge [--quick] [--only 1,3]

Figures (numbered as in docs/PERFORMANCE.md):
  1. single add req/s and p50/p99 at 1, 16, 64 connections: memberbridge
     (1 worker), nginx doing the same translation with a rewrite (1 worker),
     wrk straight to the upstream over TLS (the limit)
  2. latency added at 1 connection: memberbridge p50 - upstream p50
  3. bulk 1,000 members: one v1 PUT through the gateway, a sequential
     keep-alive client doing 1,000 v2 POSTs, 16 parallel clients, the limit
  4. memory: idle RSS, peak RSS with one 100,000-member body and with 1,000
     connections each sending a 1,000-member body
  5. instructions per upstream call (valgrind --tool=callgrind)
  6. the real Glance (workers = 2): a 100-member bulk add through the
     gateway next to python-glanceclient v2 adding them one by one

The upstream for 1-5 is a stand-in: nginx (1 worker, TLS) answering the v2
member calls with Glance-shaped JSON, so that the gateway is the bottleneck.
Layout: the proxy under test alone on CPU 1, upstream and load on CPU 0.
Every comparison is measured A B A B within one run; each figure is the
median of the rounds. Results go to stdout and, as JSON, to --json.
"""

import argparse
import asyncio
import http.client
import json
import os
import re
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
import harness  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
TASKSET = shutil.which("taskset") or "/usr/bin/taskset"
LOCAL = harness.LOCAL
NCPU = os.cpu_count() or 1
PROXY_CPU = "1" if NCPU > 1 else "0"
LOAD_CPU = "0"
TOKEN = "tok-bench"

MEMBER = ('{"status": "pending", "created_at": "2026-01-01T00:00:00Z", '
          '"updated_at": "2026-01-01T00:00:00Z", "image_id": "$img", "member_id": "m", '
          '"schema": "/v2/schemas/member"}')


def pinned(cpu, argv):
    return [TASKSET, "-c", cpu] + [str(a) for a in argv]


# --------------------------------------------------------------------------
# nginx: the stand-in upstream and the rewrite-proxy anchor

def nginx_preamble(d):
    user = ""
    if os.geteuid() == 0:
        import grp
        import pwd
        user = "user %s %s;" % (pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name)
    temps = ["client_body_temp_path %s/tmp/body;" % d, "proxy_temp_path %s/tmp/proxy;" % d]
    built = subprocess.run([harness.NGINX, "-V"], capture_output=True, text=True).stderr
    for mod in ("fastcgi", "uwsgi", "scgi"):
        if "--without-http_%s_module" % mod not in built:
            temps.append("%s_temp_path %s/tmp/%s;" % (mod, d, mod))
    return user, "\n    ".join(temps)


class Nginx:
    def __init__(self, name, http_body, cpu):
        self.dir = harness.make_workdir(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        user, temps = nginx_preamble(self.dir)
        conf = self.dir / "nginx.conf"
        conf.write_text("""%s
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 8192; }
http {
    %s
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
%s
}
""" % (user, self.dir, self.dir, temps, http_body))
        argv = [harness.NGINX, "-p", self.dir, "-e", self.dir / "error.log", "-c", conf]
        t = subprocess.run([str(a) for a in argv] + ["-t"], capture_output=True, text=True)
        if t.returncode != 0:
            raise harness.HarnessError("nginx -t (%s):\n%s" % (name, t.stderr))
        self.proc = harness.Proc(name, pinned(cpu, argv + ["-g", "daemon off;"]),
                                 self.dir / "nginx.stderr")

    def stop(self):
        self.proc.stop(10, sig=__import__("signal").SIGQUIT)


def upstream_body(pki, tls_port, plain_port):
    loc = """
        location ~ ^/v2/images/(?<img>[^/]+)/members$ {
            if ($request_method = POST) { return 200 '%(m)s'; }
            return 200 '{"members": [%(m)s], "schema": "/v2/schemas/members"}';
        }
        location ~ ^/v2/images/(?<img>[^/]+)/members/(?<mem>[^/]+)$ {
            if ($request_method = DELETE) { return 204; }
            return 200 '%(m)s';
        }
        location = /healthcheck { return 200 'OK'; }
        location = /stub { stub_status; }""" % {"m": MEMBER}
    return """
    server {
        listen 127.0.0.1:%d ssl;
        listen 127.0.0.1:%d;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:up:10m;
        %s
    }""" % (tls_port, plain_port, pki.server_cert, pki.server_key, loc)


def rewrite_body(pki, port, tls_port):
    # performance.md's working configuration; note Connection "" repeated in
    # the location (a proxy_set_header there drops the inherited ones)
    return """
    upstream up {
        server 127.0.0.1:%(tls)d;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:%(port)d;
        proxy_http_version 1.1;
        proxy_ssl_server_name on;
        proxy_ssl_name localhost;
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate %(ca)s;
        proxy_ssl_session_reuse on;
        location ~ ^/v1/images/(?<img>[^/]+)/members/(?<mem>[^/]+)$ {
            proxy_method POST;
            proxy_set_header Connection "";
            proxy_set_header Host localhost;
            proxy_set_header Content-Type application/json;
            proxy_set_body '{"member":"$mem"}';
            proxy_pass https://up/v2/images/$img/members;
        }
        location = /healthcheck { return 200 'OK'; }
    }""" % {"tls": tls_port, "port": port, "ca": pki.ca_cert}


# --------------------------------------------------------------------------
# the gateway

class Gateway:
    def __init__(self, binary, upstream_url, ca, cpu=PROXY_CPU, valgrind_out=None, **settings):
        self.dir = harness.make_workdir("bench-gateway")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = harness.free_port()
        s = {"workers": 1, "max_body_bytes": 16 << 20, "concurrency": 16,
             "max_per_request": 100000, "max_connections": 64, "level": "warning",
             "access_log": "off"}
        s.update(settings)
        conf = self.dir / "memberbridge.conf"
        conf.write_text("""[server]
listen = 127.0.0.1:%d
workers = %d
max_body_bytes = %d
[upstream]
url = %s
ca_file = %s
max_connections = %d
[members]
concurrency = %d
max_per_request = %d
[log]
level = %s
access_log = %s
""" % (self.port, s["workers"], s["max_body_bytes"], upstream_url, ca, s["max_connections"],
       s["concurrency"], s["max_per_request"], s["level"], s["access_log"]))
        os.chmod(conf, 0o600)
        argv = [binary, "-c", conf]
        if valgrind_out:
            argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % valgrind_out] + argv
        self.proc = harness.Proc("bench-gateway", pinned(cpu, argv), self.dir / "gateway.log")
        harness.wait_http_ok(self.url + "/healthcheck", self.proc, 120 if valgrind_out else 20)

    @property
    def url(self):
        return "http://%s:%d" % (LOCAL, self.port)

    @property
    def pid(self):
        # the gateway itself (taskset execs it, so the pid is the same)
        return self.proc.pid

    def rss_kib(self, field="VmRSS"):
        with open("/proc/%d/status" % self.pid) as f:
            for ln in f:
                if ln.startswith(field + ":"):
                    return int(ln.split()[1])
        return 0

    def reset_peak(self):
        with open("/proc/%d/clear_refs" % self.pid, "w") as f:
            f.write("5")

    def cpu_seconds(self):
        return proc_cpu(self.pid)

    def stop(self):
        return self.proc.stop(60)


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


# --------------------------------------------------------------------------
# wrk

WRK_V1 = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("PUT", "/v1/images/img-bench/members/m" .. n,
                    {["X-Auth-Token"] = "%s", ["Content-Length"] = "0"})
end
""" % TOKEN

WRK_V2 = """
local n = 0
request = function()
  n = n + 1
  local body = '{"member": "m' .. n .. '"}'
  return wrk.format("POST", "/v2/images/img-bench/members",
                    {["X-Auth-Token"] = "%s", ["Content-Type"] = "application/json"}, body)
end
""" % TOKEN


def _unit(v, u):
    return float(v) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[u]


def wrk(url, script, conns, seconds, cpu=LOAD_CPU):
    """Runs wrk on cpu; returns {rps, p50, p99, errors} (latencies in s)."""
    d = harness.make_workdir("wrk")
    d.mkdir(parents=True, exist_ok=True)
    lua = d / "script.lua"
    lua.write_text(script)
    r = subprocess.run(pinned(cpu, [WRK, "-t1", "-c%d" % conns, "-d%ds" % seconds,
                                         "--latency", "-s", lua, url]),
                       capture_output=True, text=True, timeout=seconds + 60)
    out = r.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p = dict((k, _unit(v, u)) for k, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$",
                                                       out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:(.*)", out)
    if not m or "50" not in p:
        raise harness.HarnessError("wrk output not understood:\n%s%s" % (out, r.stderr))
    return {"rps": float(m.group(1)), "p50": p["50"], "p99": p.get("99", 0.0),
            "errors": (int(bad.group(1)) if bad else 0), "socket_errors": errs.group(1).strip() if errs else ""}


# --------------------------------------------------------------------------
# clients for the bulk figures

def tls_context(pki):
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    return ctx


def v2_posts(port, pki, image, members):
    """One keep-alive TLS connection, one POST per member, sequentially."""
    c = http.client.HTTPSConnection(LOCAL, port, context=tls_context(pki), timeout=60)
    h = {"X-Auth-Token": TOKEN, "Content-Type": "application/json"}
    for m in members:
        c.request("POST", "/v2/images/%s/members" % image, body=json.dumps({"member": m}), headers=h)
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
    c.close()


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bulk_body(members):
    return json.dumps({"members": [{"member_id": m} for m in members]}).encode()


def gateway_bulk(port, image, members, conn=None):
    c = conn or http.client.HTTPConnection(LOCAL, port, timeout=300)
    c.request("PUT", "/v1/images/%s/members/%s" % (image, members[0]), body=bulk_body(members),
              headers={"X-Auth-Token": TOKEN, "Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    assert r.status == 204, (r.status, body[:300])
    if conn is None:
        c.close()


# --------------------------------------------------------------------------
# the figures

def fig1_2(ctx, res):
    conns = [1, 16, 64]
    secs = ctx.secs
    # The proxies run on PROXY_CPU with wrk and the upstream sharing
    # LOAD_CPU; "upstream (limit, TLS)" is measured the same way. With two
    # CPUs that shared core caps everything near the upstream's limit, so
    # the upstream is also measured with wrk on the other core (the
    # proxy's, idle then): the upstream's own limit.
    setups = [("upstream (limit, TLS)", ctx.up_tls + "/v2/images/img-bench/members", WRK_V2),
              ("nginx rewrite", ctx.nginx_url + "/v1/images/img-bench/members/x", WRK_V1),
              ("memberbridge", ctx.gw.url + "/v1/images/img-bench/members/x", WRK_V1)]
    if NCPU > 1:
        setups.append(("upstream, wrk on its own core", ctx.up_tls + "/v2/images/img-bench/members",
                       WRK_V2))
    rows = {(name, c): [] for name, _, _ in setups for c in conns}
    cpu = {name: [] for name, _, _ in setups}
    for rnd in range(ctx.rounds):
        for c in conns:
            for name, url, script in setups:          # A B C A B C ...
                pid = {"nginx rewrite": ctx.nginx_pid, "memberbridge": ctx.gw.pid}.get(name)
                c0 = proc_cpu(pid) if pid else 0
                w = wrk(url, script, c, secs, cpu=PROXY_CPU if "own core" in name else LOAD_CPU)
                if pid:
                    cpu[name].append((proc_cpu(pid) - c0) / max(w["rps"] * secs, 1) * 1e6)
                rows[(name, c)].append(w)
                print("  round %d c%-3d %-22s %9.0f req/s  p50 %7.0f us  p99 %7.0f us%s" % (
                    rnd + 1, c, name, w["rps"], w["p50"] * 1e6, w["p99"] * 1e6,
                    "  NON-2XX %d" % w["errors"] if w["errors"] else ""), flush=True)
    med = {}
    for (name, c), ws in rows.items():
        med["%s c%d" % (name, c)] = {
            "rps": statistics.median(w["rps"] for w in ws),
            "p50_us": statistics.median(w["p50"] for w in ws) * 1e6,
            "p99_us": statistics.median(w["p99"] for w in ws) * 1e6,
            "errors": sum(w["errors"] for w in ws)}
    for name in cpu:
        if cpu[name]:
            med["%s cpu_us_per_req" % name] = statistics.median(cpu[name])
    res["fig1"] = med
    ratio = med["memberbridge c16"]["rps"] / med["nginx rewrite c16"]["rps"]
    res["fig1"]["ratio_c16_vs_nginx"] = ratio
    added = med["memberbridge c1"]["p50_us"] - med["upstream (limit, TLS) c1"]["p50_us"]
    res["fig2"] = {"added_p50_us": added,
                   "memberbridge_p50_us": med["memberbridge c1"]["p50_us"],
                   "upstream_p50_us": med["upstream (limit, TLS) c1"]["p50_us"],
                   "nginx_added_p50_us": med["nginx rewrite c1"]["p50_us"]
                   - med["upstream (limit, TLS) c1"]["p50_us"]}
    print("figure 1: memberbridge/nginx at c16 = %.2f" % ratio)
    print("figure 2: latency added at c1 (p50) = %.0f us" % added)


def fig3(ctx, res):
    n = 1000
    runs = {"memberbridge bulk PUT": [], "sequential v2 client": [], "16 parallel v2 clients": []}
    for rnd in range(max(ctx.rounds, 3)):
        members = ["b%d-%d" % (rnd, i) for i in range(n)]
        conn = http.client.HTTPConnection(LOCAL, ctx.gw.port, timeout=300)
        gateway_bulk(ctx.gw.port, "warm", members[:16], conn)     # connections warm
        runs["memberbridge bulk PUT"].append(timed(lambda: gateway_bulk(ctx.gw.port, "img-bulk",
                                                                        members, conn)))
        conn.close()
        runs["sequential v2 client"].append(timed(lambda: v2_posts(ctx.up_tls_port, ctx.pki,
                                                                   "img-bulk", members)))

        def parallel():
            parts = [members[i::16] for i in range(16)]
            ts = [threading.Thread(target=v2_posts, args=(ctx.up_tls_port, ctx.pki, "img-bulk", p))
                  for p in parts]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        runs["16 parallel v2 clients"].append(timed(parallel))
        print("  round %d: %s" % (rnd + 1, ", ".join("%s %.1f ms" % (k, v[-1] * 1e3)
                                                    for k, v in runs.items())), flush=True)
    med = {k: statistics.median(v) * 1e3 for k, v in runs.items()}
    up_rps = res.get("fig1", {}).get("upstream (limit, TLS) c16", {}).get("rps")
    if up_rps:
        med["limit (1000 / upstream req/s at c16)"] = n / up_rps * 1e3
    own = res.get("fig1", {}).get("upstream, wrk on its own core c16", {}).get("rps")
    if own:
        med["limit, wrk on its own core"] = n / own * 1e3
    res["fig3_ms"] = med
    for k, v in med.items():
        print("figure 3: %-40s %8.1f ms" % (k, v))


def fig4(ctx, res):
    gw = ctx.gw
    out = {"idle_rss_mib": ctx.idle_rss / 1024.0}
    big = ["p%06d" % i for i in range(100000)]
    peaks = []
    for _ in range(ctx.rounds):
        gw.reset_peak()
        gateway_bulk(gw.port, "img-big", big)
        peaks.append(gw.rss_kib("VmHWM") / 1024.0)
    out["peak_rss_100k_body_mib"] = statistics.median(peaks)
    peaks = []
    for rnd in range(1):    # one round: a million upstream calls take about 100 s here
        gw.reset_peak()
        asyncio.run(many_bodies(gw.port, 1000 if not ctx.quick else 200, 1000, rnd))
        peaks.append(gw.rss_kib("VmHWM") / 1024.0)
    out["peak_rss_1000_conns_x_1000_members_mib"] = statistics.median(peaks)
    res["fig4"] = out
    for k, v in out.items():
        print("figure 4: %-40s %8.1f MiB" % (k, v))


async def many_bodies(port, nconn, nmembers, rnd):
    """nconn connections, each sending one nmembers-member bulk PUT, all at once."""
    async def one(i):
        members = ["c%d-%d-%d" % (rnd, i, k) for k in range(nmembers)]
        body = bulk_body(members)
        for attempt in range(5):
            try:
                reader, writer = await asyncio.open_connection(LOCAL, port)
                break
            except OSError:
                await asyncio.sleep(0.2)
        head = ("PUT /v1/images/img-c%d/members/%s HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (i, members[0], TOKEN, len(body))).encode()
        writer.write(head + body)
        await writer.drain()
        status = await reader.readline()
        await reader.read()
        writer.close()
        assert b" 204 " in status, status
    await asyncio.gather(*(one(i) for i in range(nconn)))


def fig5(ctx, res):
    """Instructions per upstream call: two runs that differ only in the
    number of calls; the difference divided by the difference in calls."""
    if not shutil.which("valgrind"):
        res["fig5"] = {"skipped": "valgrind not installed"}
        return
    out = {}
    for kind, small, large in (("single add", 200, 1200), ("bulk member", 1000, 3000)):
        totals = []
        for n in (small, large):
            cg = harness.make_workdir("callgrind") / "cg.out"
            cg.parent.mkdir(parents=True, exist_ok=True)
            gw = Gateway(ctx.binary, ctx.up_tls, ctx.pki.ca_cert, valgrind_out=cg)
            try:
                conn = http.client.HTTPConnection(LOCAL, gw.port, timeout=600)
                if kind == "single add":
                    for i in range(n):
                        conn.request("PUT", "/v1/images/img-cg/members/s%d" % i,
                                     headers={"X-Auth-Token": TOKEN, "Content-Length": "0"})
                        r = conn.getresponse()
                        r.read()
                        assert r.status == 204
                else:
                    gateway_bulk(gw.port, "img-cg", ["k%d" % i for i in range(n)], conn)
                conn.close()
            finally:
                gw.stop()
            text = cg.read_text()
            m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
            totals.append(int(m.group(1)))
        per = (totals[1] - totals[0]) / (large - small)
        out[kind + " instructions/call"] = per
        print("figure 5: %-12s %.0f instructions per upstream call (Ir %d vs %d)" % (
            kind, per, totals[0], totals[1]), flush=True)
    res["fig5"] = out


def fig6(ctx, res):
    """The real Glance with workers = 2."""
    from glanceclient import Client
    os.environ["REQUESTS_CA_BUNDLE"] = str(ctx.pki.ca_cert)   # glanceclient's requests session
    glance = harness.Glance(quota=1000, name="bench-glance", workers=2).start()
    tls = harness.TlsTerminator(ctx.pki, glance.port, name="bench-glance-nginx").start()
    gw = Gateway(ctx.binary, tls.url, ctx.pki.ca_cert, workers=1, cpu="0-%d" % (NCPU - 1))
    try:
        owner = harness.unique("bench")
        runs = {"memberbridge bulk 100": [], "glanceclient v2, 100 one by one": []}
        cpu_share = []
        h = harness.glance_headers(owner)
        for rnd in range(ctx.rounds):
            img = glance.create_image(owner)
            members = ["g%d-%d" % (rnd, i) for i in range(100)]
            g0, c0 = glance_cpu(glance), gw.cpu_seconds()
            t0 = time.perf_counter()
            c = http.client.HTTPConnection(LOCAL, gw.port, timeout=600)
            c.request("PUT", "/v1/images/%s/members/%s" % (img, members[0]), body=bulk_body(members),
                      headers=dict(h, **{"Content-Type": "application/json"}))
            r = c.getresponse()
            r.read()
            assert r.status == 204, r.status
            runs["memberbridge bulk 100"].append(time.perf_counter() - t0)
            g1, c1 = glance_cpu(glance), gw.cpu_seconds()
            cpu_share.append((c1 - c0) / max(g1 - g0, 1e-9))
            img2 = glance.create_image(owner)
            client = Client("2", endpoint=tls.url, token=harness.SECRET_TOKEN,
                            cacert=str(ctx.pki.ca_cert),
                            identity_headers={k: v for k, v in h.items() if k.startswith("X-")})
            t0 = time.perf_counter()
            for m in members:
                client.image_members.create(img2, m)
            runs["glanceclient v2, 100 one by one"].append(time.perf_counter() - t0)
            print("  round %d: %s; gateway CPU / Glance CPU %.2f%%" % (
                rnd + 1, ", ".join("%s %.2f s" % (k, v[-1]) for k, v in runs.items()),
                cpu_share[-1] * 100), flush=True)
        out = {k: statistics.median(v) for k, v in runs.items()}
        out["gateway_cpu_share_of_glance_pct"] = statistics.median(cpu_share) * 100
        res["fig6"] = out
        for k, v in out.items():
            print("figure 6: %-40s %8.2f" % (k, v))
    finally:
        gw.stop()
        tls.stop()
        glance.stop()


def glance_cpu(glance):
    """CPU seconds of the Glance API process and its workers."""
    total = 0.0
    for pid in [glance.proc.pid] + children_of(glance.proc.pid):
        try:
            total += proc_cpu(pid)
        except OSError:
            pass
    return total


# --------------------------------------------------------------------------

class Ctx:
    pass


FIGURES = [
    (1, "figures 1 and 2: single add, wrk -t1, 3 rounds", fig1_2),
    (3, "figure 3: bulk 1,000 members", fig3),
    (4, "figure 4: memory", fig4),
    (5, "figure 5: instructions per upstream call (callgrind)", fig5),
    (6, "figure 6: the real Glance, workers = 2", fig6),
]


def machine():
    cpu = ""
    try:
        cpu = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")][0]
    except (OSError, IndexError):
        pass
    return {"cpus": NCPU, "cpu": cpu, "kernel": os.uname().release,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--quick", action="store_true", help="3 s wrk runs, fewer rounds where allowed")
    p.add_argument("--only", default="1,3,4,5,6", help="figures to run (2 comes with 1)")
    p.add_argument("--json", default=str(HERE / "results.json"))
    a = p.parse_args()
    only = {int(x) for x in a.only.split(",")}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))    # figure 4's 1,000 connections

    ctx = Ctx()
    ctx.binary = os.path.abspath(a.binary)
    ctx.quick = a.quick
    ctx.rounds = 3
    ctx.secs = 3 if a.quick else 8
    ctx.pki = harness.PKI()
    res = {"machine": machine(), "quick": a.quick}
    print("machine: %(cpus)d CPUs, %(cpu)s, kernel %(kernel)s, %(date)s" % res["machine"])
    ups = []
    try:
        if only & {1, 3, 4, 5}:
            ctx.up_tls_port, up_plain = harness.free_port(), harness.free_port()
            ctx.up_tls = "https://%s:%d" % (LOCAL, ctx.up_tls_port)
            up = Nginx("bench-upstream", upstream_body(ctx.pki, ctx.up_tls_port, up_plain), LOAD_CPU)
            ups.append(up)
            harness.wait_http_ok(ctx.up_tls + "/healthcheck", up.proc, 20, verify=str(ctx.pki.ca_cert))
            nport = harness.free_port()
            ctx.nginx_url = "http://%s:%d" % (LOCAL, nport)
            ng = Nginx("bench-nginx-rewrite", rewrite_body(ctx.pki, nport, ctx.up_tls_port), PROXY_CPU)
            ups.append(ng)
            harness.wait_http_ok(ctx.nginx_url + "/healthcheck", ng.proc, 20)
            # nginx's worker is the child of its master
            ctx.nginx_pid = (children_of(ng.proc.pid) or [ng.proc.pid])[0]
            ctx.gw = Gateway(ctx.binary, ctx.up_tls, ctx.pki.ca_cert)
            ups.append(ctx.gw)
            time.sleep(0.5)
            ctx.idle_rss = ctx.gw.rss_kib()
            for n, title, fn in FIGURES:
                if n in only and n != 6:
                    print(title)
                    figure(fn, ctx, res, a.json)
        if 6 in only:
            print(FIGURES[-1][1])
            figure(fig6, ctx, res, a.json)
    finally:
        for x in reversed(ups):
            try:
                x.stop()
            except Exception as e:  # noqa: BLE001
                print("stopping: %s" % e, file=sys.stderr)
        harness.stop_all()
    Path(a.json).write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    print("results written to %s" % a.json)


def figure(fn, ctx, res, json_path):
    """Runs one figure; a failure is recorded, not fatal; results so far are
    written after each figure."""
    try:
        fn(ctx, res)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        res.setdefault("failed", {})[fn.__name__] = repr(e)
    Path(json_path).write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


def children_of(pid):
    """The pids whose parent is pid."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


if __name__ == "__main__":
    main()
