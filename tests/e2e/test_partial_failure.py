"""Partial failure and the results body (SPEC section 2), against a Glance
whose image_member_quota is 5, through a gateway with concurrency 4."""

from conftest import QUOTA_GLANCE_QUOTA
from harness import unique, v1


def check_results_body(r, code, members, action="add"):
    """The error body names every member's outcome; returns {member: entry}."""
    assert r.status_code == code, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json")
    body = r.json()
    assert body["error"]["code"] == code
    assert body["error"]["title"]
    assert isinstance(body["error"]["message"], str)
    results = body["results"]
    ids = [e["member_id"] for e in results]
    assert len(ids) == len(set(ids)), "one entry per member: %r" % ids
    assert set(ids) == set(members)
    for e in results:
        assert isinstance(e["done"], bool), e
        assert e["action"] == action, e
        assert isinstance(e["status"], int), e
    return {e["member_id"]: e for e in results}


def test_bulk_add_over_quota_is_413_and_results_match_glance(quota_gateway, glance_quota):
    owner = unique("owner")
    image = glance_quota.create_image(owner)
    path_member = unique("path")
    listed = [unique("m") for _ in range(19)]
    everyone = [path_member, *listed]  # 20 members, 5 free slots, concurrency 4
    r = v1(quota_gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, path_member), owner,
           body={"members": [{"member_id": x} for x in listed]})
    results = check_results_body(r, 413, everyone)
    done = {m for m, e in results.items() if e["done"]}
    not_done = {m for m, e in results.items() if not e["done"]}
    actual = glance_quota.v2_members(image, owner)
    assert done == actual, "results say %s done, Glance has %s" % (sorted(done), sorted(actual))
    assert len(actual) >= QUOTA_GLANCE_QUOTA
    assert not_done, "20 members cannot fit in 5 slots"
    for m in not_done:
        assert results[m]["status"] == 413, results[m]
    for m in done:
        assert results[m]["status"] in (200, 201, 409), results[m]


def test_duplicate_add_at_quota_is_204(quota_gateway, glance_quota):
    # At the quota Glance answers 413 even for an existing member; the gateway
    # then GETs the member and counts it as done.
    owner = unique("owner")
    image = glance_quota.create_image(owner)
    existing = [unique("m") for _ in range(QUOTA_GLANCE_QUOTA)]
    for m in existing:
        glance_quota.add_v2_member(image, owner, m)
    r = v1(quota_gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, existing[0]), owner)
    assert r.status_code == 204, r.text
    r = v1(quota_gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, existing[1]), owner,
           body={"members": [{"member_id": x} for x in existing[2:]]})
    assert r.status_code == 204, r.text
    assert glance_quota.v2_members(image, owner) == set(existing)


def test_add_at_quota_mixed_existing_and_new(quota_gateway, glance_quota):
    owner = unique("owner")
    image = glance_quota.create_image(owner)
    existing = [unique("m") for _ in range(QUOTA_GLANCE_QUOTA)]
    for m in existing:
        glance_quota.add_v2_member(image, owner, m)
    new = unique("new")
    r = v1(quota_gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, existing[0]), owner,
           body={"members": [{"member_id": new}, {"member_id": existing[1]}]})
    results = check_results_body(r, 413, [existing[0], existing[1], new])
    assert results[existing[0]]["done"] and results[existing[1]]["done"]
    assert not results[new]["done"] and results[new]["status"] == 413
    assert glance_quota.v2_members(image, owner) == set(existing)


def test_add_to_private_image_is_403_with_results(gateway, glance):
    owner = unique("owner")
    image = glance.create_image(owner, "private")
    path_member, listed = unique("path"), [unique("m") for _ in range(3)]
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, path_member), owner,
           body={"members": [{"member_id": x} for x in listed]})
    results = check_results_body(r, 403, [path_member, *listed])
    assert not any(e["done"] for e in results.values())
    assert all(e["status"] == 403 for e in results.values())
    # Unchanged: still private, still no members (v2 answers 403 for them).
    assert glance.image(image, owner).json()["visibility"] == "private"
    r = glance.request("GET", "/v2/images/%s/members" % image, owner)
    assert r.status_code == 403


def test_add_by_non_owner_is_refused_and_changes_nothing(gateway, glance):
    owner, intruder = unique("owner"), unique("intruder")
    image = glance.create_image(owner)
    keep = unique("keep")
    glance.add_v2_member(image, owner, keep)
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("m")), intruder)
    assert r.status_code in (403, 404), r.text
    assert r.json()["error"]["code"] == r.status_code
    assert glance.v2_members(image, owner) == {keep}
