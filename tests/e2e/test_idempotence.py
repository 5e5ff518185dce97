"""Sending the same call twice converges, as v1 did (SPEC section 2)."""

from harness import unique, v1


def twice(gateway, method, path, project, body=None):
    return [v1(gateway.url, method, path, project, body=body) for _ in range(2)]


def test_add_twice(gateway, glance, owner, shared_image):
    m = unique("m")
    r1, r2 = twice(gateway, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
                   body={"member": {"can_share": False}})
    assert (r1.status_code, r2.status_code) == (204, 204), (r1.text, r2.text)
    assert glance.v2_members(shared_image, owner) == {m}


def test_add_of_existing_member_is_204(gateway, glance, owner, shared_image):
    m = unique("m")
    glance.add_v2_member(shared_image, owner, m)
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m}


def test_bulk_add_twice(gateway, glance, owner, shared_image):
    m = unique("path")
    listed = [unique("m") for _ in range(10)]
    body = {"members": [{"member_id": x} for x in listed]}
    r1, r2 = twice(gateway, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner, body)
    assert (r1.status_code, r2.status_code) == (204, 204), (r1.text, r2.text)
    assert glance.v2_members(shared_image, owner) == {m, *listed}


def test_bulk_add_partly_existing(gateway, glance, owner, shared_image):
    m = unique("path")
    listed = [unique("m") for _ in range(6)]
    for x in listed[:3]:
        glance.add_v2_member(shared_image, owner, x)
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"members": [{"member_id": x} for x in listed]})
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m, *listed}


def test_replace_twice(gateway, glance, owner, shared_image):
    old, keep, new = unique("old"), unique("keep"), unique("new")
    glance.add_v2_member(shared_image, owner, old)
    glance.add_v2_member(shared_image, owner, keep)
    body = {"memberships": [{"member_id": keep}, {"member_id": new}]}
    r1, r2 = twice(gateway, "PUT", "/v1/images/%s/members" % shared_image, owner, body)
    assert (r1.status_code, r2.status_code) == (204, 204), (r1.text, r2.text)
    assert glance.v2_members(shared_image, owner) == {keep, new}


def test_delete_twice(gateway, glance, owner, shared_image):
    m, keep = unique("m"), unique("keep")
    glance.add_v2_member(shared_image, owner, m)
    glance.add_v2_member(shared_image, owner, keep)
    r1, r2 = twice(gateway, "DELETE", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert r1.status_code == 204, r1.text
    assert r2.status_code == 404, r2.text
    assert r2.headers.get("Content-Type", "").startswith("application/json")
    assert r2.json()["error"]["code"] == 404
    assert glance.v2_members(shared_image, owner) == {keep}
