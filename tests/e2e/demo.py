#!/usr/bin/python3
"""The demonstration: a real Glance behind nginx (TLS), memberbridge in front,
and one legacy v1 bulk membership call sent with curl.

    demo.py [PATH_TO_MEMBERBRIDGE]     (default: build/src/memberbridge)
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(harness.REPO / "build/src/memberbridge")
    own_workdir = "MB_E2E_WORKDIR" not in os.environ
    os.environ.setdefault("MB_E2E_WORKDIR", str(harness.make_workdir("demo")))
    t0 = time.monotonic()
    print("Starting Glance (sqlite, loopback), nginx (TLS with a throwaway CA) and memberbridge...")
    stack = None
    try:
        stack = harness.Stack(binary)
        print("  Glance       %s  (plain http, loopback only)" % stack.glance.url)
        print("  nginx TLS    %s  -> Glance" % stack.tls.url)
        print("  memberbridge %s  -> %s (CA %s)"
              % (stack.gateway.url, stack.tls.url, stack.pki.ca_cert))
        print("  ready in %.1f s" % (time.monotonic() - t0))

        owner = "demo-owner"
        image = stack.glance.create_image(owner, "shared", name="demo-image")
        tenants = ["tenant-%d" % i for i in range(1, 7)]
        # The bulk form: the member in the path plus every listed member.
        body = json.dumps({"members": [{"member_id": t, "can_share": False} for t in tenants[1:]]})
        url = "%s/v1/images/%s/members/%s" % (stack.gateway.url, image, tenants[0])
        headers = harness.glance_headers(owner, token="demo-token")
        cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", url,
               "-H", "Content-Type: application/json", "--data-binary", body]
        for k, v in headers.items():
            cmd += ["-H", "%s: %s" % (k, v)]

        print("\nImage %s (visibility shared) owned by %s." % (image, owner))
        print("One legacy Image API v1 bulk call through memberbridge:")
        print("  curl -X PUT %s \\\n    -H 'X-Auth-Token: ...' -H 'X-Project-Id: %s' ... \\\n"
              "    --data-binary '%s'" % (url, owner, body))
        status = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        print("\nHTTP status: %s" % (status.stdout.strip() or status.stderr.strip()))

        members = stack.glance.request("GET", "/v2/images/%s/members" % image, owner).json()
        print("\nMembers, straight from Glance (GET /v2/images/%s/members):" % image)
        for m in sorted(members["members"], key=lambda m: m["member_id"]):
            print("  %-12s status=%s" % (m["member_id"], m["status"]))
        ok = status.stdout.strip() == "204" and \
            {m["member_id"] for m in members["members"]} == set(tenants)
        print("\n%s" % ("OK: 1 v1 call became %d v2 calls." % len(tenants) if ok
                        else "UNEXPECTED result (logs in %s)" % os.environ["MB_E2E_WORKDIR"]))
        if ok and own_workdir:
            shutil.rmtree(os.environ["MB_E2E_WORKDIR"], ignore_errors=True)
        return 0 if ok else 1
    except harness.HarnessError as e:
        print("demo failed: %s" % e, file=sys.stderr)
        return 1
    finally:
        if stack:
            stack.stop()
        harness.stop_all()
        print("Stopped everything.")


if __name__ == "__main__":
    sys.exit(main())
