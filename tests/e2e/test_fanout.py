"""Fan-out: one bulk v1 add becomes one v2 POST per member, with at most
[members] concurrency of them in flight (SPEC; docs/MAPPING.md)."""

import pytest

from harness import unique, v1

DELAY = 0.3  # seconds the slow upstream takes per call


@pytest.mark.parametrize("concurrency, members", [(3, 12), (1, 4)])
def test_bulk_add_keeps_concurrency_calls_in_flight(make_gateway, bad_upstream, owner,
                                                    concurrency, members):
    b = bad_upstream("slow", delay=DELAY)  # answers each call after DELAY, counts them in flight
    gw = make_gateway(upstream=b, concurrency=concurrency, request_timeout=10, retries=0)
    ids = [unique("m") for _ in range(members)]
    r = v1(gw.url, "PUT", "/v1/images/img-1/members/%s" % ids[0], owner,
           body={"members": [{"member_id": m} for m in ids[1:]]})
    assert r.status_code == 204, r.text
    seen = b.requests_seen()
    assert [line.split()[2:] for line in seen] == \
        [["POST", "/v2/images/img-1/members"]] * members, seen
    # Exactly `concurrency`: no more (the bound), and no fewer (with calls
    # that each take DELAY, a fan-out that runs them all at once reaches it).
    assert b.max_in_flight() == concurrency
