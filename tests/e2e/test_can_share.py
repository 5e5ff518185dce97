"""can_share: true, with [members] can_share = ignore (default) and reject
(SPEC section 1, can_share)."""

from harness import unique, v1


def warning_ok(r):
    w = r.headers.get("Warning", "")
    return "299 memberbridge" in w and "can_share" in w


def test_ignore_single_add(gateway, glance, owner, shared_image):
    m = unique("m")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"member": {"can_share": True}})
    assert r.status_code == 204, r.text
    assert warning_ok(r), r.headers
    assert glance.v2_members(shared_image, owner) == {m}


def test_ignore_bulk_add(gateway, glance, owner, shared_image):
    m, a, b = unique("path"), unique("a"), unique("b")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"members": [{"member_id": a, "can_share": True},
                             {"member_id": b, "can_share": False}]})
    assert r.status_code == 204, r.text
    assert warning_ok(r), r.headers
    assert glance.v2_members(shared_image, owner) == {m, a, b}


def test_ignore_replace(gateway, glance, owner, shared_image):
    a = unique("a")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members" % shared_image, owner,
           body={"memberships": [{"member_id": a, "can_share": True}]})
    assert r.status_code == 204, r.text
    assert warning_ok(r), r.headers
    assert glance.v2_members(shared_image, owner) == {a}


def test_no_warning_without_can_share_true(gateway, glance, owner, shared_image):
    m = unique("m")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"member": {"can_share": False}})
    assert r.status_code == 204, r.text
    assert "Warning" not in r.headers


def test_reject(make_gateway, glance, owner, shared_image):
    gw = make_gateway(can_share="reject")
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    m, a = unique("m"), unique("a")
    calls = [
        ("/v1/images/%s/members/%s" % (shared_image, m), {"member": {"can_share": True}}),
        ("/v1/images/%s/members/%s" % (shared_image, m),
         {"members": [{"member_id": a}, {"member_id": unique("b"), "can_share": True}]}),
        ("/v1/images/%s/members" % shared_image,
         {"memberships": [{"member_id": a, "can_share": True}]}),
    ]
    for path, body in calls:
        r = v1(gw.url, "PUT", path, owner, body=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == 400
        assert glance.v2_members(shared_image, owner) == {keep}
    # can_share false is still fine with reject.
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"member": {"can_share": False}})
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {keep, m}
