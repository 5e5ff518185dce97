"""A caller the upstream does not accept: its 401 reaches the v1 client as
is (SPEC section 2: "the upstream's 4xx as it is"), with a results body for
member operations, and nothing changes in Glance. (Glance's trusted paste
flavor answers 401 unless X-Identity-Status is Confirmed, as keystonemiddleware
marks a token it rejected.)"""

import pytest

from harness import unique, v1

REJECTED = {"X-Identity-Status": "Invalid"}


def test_add_and_bulk_add_with_rejected_identity(gateway, glance, owner, shared_image):
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    m, others = unique("m"), [unique("o") for _ in range(3)]
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"members": [{"member_id": o} for o in others]}, headers=REJECTED)
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["error"]["code"] == 401
    assert {x["member_id"] for x in body["results"]} == {m, *others}
    assert all(x["status"] == 401 and x["done"] is False for x in body["results"])
    assert glance.v2_members(shared_image, owner) == {keep}


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/images/{image}/members"),
    ("DELETE", "/v1/images/{image}/members/{keep}"),
    ("GET", "/v1/shared-images/{keep}"),
])
def test_other_calls_with_rejected_identity(gateway, glance, owner, shared_image, method, path):
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    r = v1(gateway.url, method, path.format(image=shared_image, keep=keep), owner,
           headers=REJECTED)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == 401
    assert glance.v2_members(shared_image, owner) == {keep}


def test_replace_with_rejected_identity(gateway, glance, owner, shared_image):
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    r = v1(gateway.url, "PUT", "/v1/images/%s/members" % shared_image, owner,
           body={"memberships": [{"member_id": unique("n")}]}, headers=REJECTED)
    assert r.status_code == 401, r.text
    assert glance.v2_members(shared_image, owner) == {keep}
