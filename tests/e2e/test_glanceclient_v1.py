"""python-glanceclient's v1 module (Debian's python3-glanceclient) as the
legacy client, through the gateway; every step checked in Glance v2.

Image ids, not image objects, are passed: an image object would make the v1
client call /v1/images/{id}, which is not a membership call."""

import pytest
from glanceclient import Client
from glanceclient import exc as gexc

from harness import SECRET_TOKEN, unique


def legacy_client(gateway, project):
    return Client("1", endpoint=gateway.url, token=SECRET_TOKEN,
                  identity_headers={"X-Identity-Status": "Confirmed",
                                    "X-Project-Id": project,
                                    "X-Roles": "member,reader"})


def test_create_list_replace_delete(gateway, glance, owner, shared_image):
    c = legacy_client(gateway, owner)
    a, b, d = unique("a"), unique("b"), unique("d")

    c.image_members.create(shared_image, a, can_share=False)
    assert glance.v2_members(shared_image, owner) == {a}
    c.image_members.create(shared_image, a, can_share=False)  # again: still fine
    assert glance.v2_members(shared_image, owner) == {a}

    c.image_members.replace(shared_image, [{"member_id": b}, {"member_id": d,
                                                              "can_share": False}])
    assert glance.v2_members(shared_image, owner) == {b, d}

    listed = c.image_members.list(image=shared_image)
    assert sorted(m.member_id for m in listed) == sorted([b, d])
    assert all(m.can_share is False for m in listed)
    assert all(m.image_id == shared_image for m in listed)

    c.image_members.delete(shared_image, b)
    assert glance.v2_members(shared_image, owner) == {d}
    with pytest.raises(gexc.HTTPNotFound):
        c.image_members.delete(shared_image, b)
    assert glance.v2_members(shared_image, owner) == {d}


def test_list_by_member(gateway, glance, owner):
    m = unique("m")
    images = {glance.create_image(owner) for _ in range(3)}
    other = glance.create_image(owner)
    for image in images:
        glance.add_v2_member(image, owner, m)
    glance.add_v2_member(other, owner, unique("x"))

    for project in (owner, m):
        c = legacy_client(gateway, project)
        listed = c.image_members.list(member=m)
        assert {x.image_id for x in listed} == images
        assert all(x.member_id == m and x.can_share is False for x in listed)
    for image in images:
        assert glance.v2_members(image, owner) == {m}


def test_replace_with_member_objects(gateway, glance, owner, shared_image):
    # replace() also accepts the objects list() returned (member_id, can_share).
    c = legacy_client(gateway, owner)
    a, b = unique("a"), unique("b")
    glance.add_v2_member(shared_image, owner, a)
    current = c.image_members.list(image=shared_image)
    c.image_members.create(shared_image, b)
    c.image_members.replace(shared_image, current)
    assert glance.v2_members(shared_image, owner) == {a}
