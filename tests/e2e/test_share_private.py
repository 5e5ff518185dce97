"""[members] share_private_images = true: v1 took members on private images,
v2 refuses them (403) until the image is `shared`. The gateway makes a
private image shared with the caller's own token, then adds the members;
public and community images are never changed. Checked against the real
Glance (trusted identity headers), and against a scripted upstream for the
failures Glance will not produce on demand."""

import json
import threading

import harness
from harness import unique, v1


def _gateway(make_gateway, **kw):
    return make_gateway(share_private_images="true", **kw)


def _visibility(glance, image, owner):
    return glance.image(image, owner).json()["visibility"]


def _shared_log_lines(gw):
    return [line for line in gw.stderr_text().splitlines() if "was private and is now shared" in line]


def test_single_add_to_private_image_makes_it_shared(make_gateway, glance, owner):
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "private")
    member = unique("m")
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, member), owner)
    assert r.status_code == 204, r.text
    assert _visibility(glance, image, owner) == "shared"
    assert glance.v2_members(image, owner) == {member}
    assert len(_shared_log_lines(gw)) == 1


def test_bulk_add_to_private_image_one_change_all_members(make_gateway, glance, owner):
    # 40 members, 16 at a time: many adds are refused at once, the image is
    # changed once, and every refused add is sent again.
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "private")
    members = [unique("m") for _ in range(40)]
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, members[0]), owner,
           body={"members": [{"member_id": m} for m in members]})
    assert r.status_code == 204, r.text
    assert _visibility(glance, image, owner) == "shared"
    assert glance.v2_members(image, owner) == set(members)
    assert len(_shared_log_lines(gw)) == 1


def test_replace_on_private_image(make_gateway, glance, owner):
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "private")
    members = [unique("m") for _ in range(3)]
    r = v1(gw.url, "PUT", "/v1/images/%s/members" % image, owner,
           body={"memberships": [{"member_id": m} for m in members]})
    assert r.status_code == 204, r.text
    assert _visibility(glance, image, owner) == "shared"
    assert glance.v2_members(image, owner) == set(members)


def test_concurrent_adds_to_one_private_image_all_done(make_gateway, glance, owner):
    # Several requests at once: one of them makes the image shared; the
    # others see it shared when they look, and send their adds again.
    gw = _gateway(make_gateway)
    for _ in range(3):
        image = glance.create_image(owner, "private")
        members = [unique("m") for _ in range(4)]
        statuses = []

        def add(m):
            statuses.append(v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, m), owner).status_code)

        threads = [threading.Thread(target=add, args=(m,)) for m in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [204] * 4
        assert glance.v2_members(image, owner) == set(members)
        assert _visibility(glance, image, owner) == "shared"


def test_replace_on_private_image_removes_hidden_old_members(make_gateway, glance, owner):
    # Glance keeps the member rows of an image made private, hidden; made
    # shared again they are members again. The replace must remove them.
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "shared")
    old = [unique("old") for _ in range(2)]
    for m in old:
        glance.add_v2_member(image, owner, m)
    r = glance.request("PATCH", "/v2/images/%s" % image, owner,
                       headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
                       data=json.dumps([{"op": "replace", "path": "/visibility", "value": "private"}]))
    assert r.status_code == 200, r.text
    new = unique("new")
    r = v1(gw.url, "PUT", "/v1/images/%s/members" % image, owner,
           body={"memberships": [{"member_id": new}]})
    assert r.status_code == 204, r.text
    assert _visibility(glance, image, owner) == "shared"
    assert glance.v2_members(image, owner) == {new}


def test_shared_image_is_not_looked_at(make_gateway, glance, owner):
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "shared")
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("m")), owner)
    assert r.status_code == 204, r.text
    assert "GET /v2/images/%s " % image not in gw.access_log_text()
    assert _shared_log_lines(gw) == []


def test_public_image_left_alone_and_refused(make_gateway, glance, owner):
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "public")
    member = unique("m")
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, member), owner,
           body={"members": [{"member_id": member}, {"member_id": unique("m")}]})
    assert r.status_code == 403, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [403, 403]
    assert not any(x["done"] for x in results)
    assert _visibility(glance, image, owner) == "public"
    assert _shared_log_lines(gw) == []


def test_community_image_left_alone_and_refused(make_gateway, glance, owner):
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "community")
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("m")), owner)
    assert r.status_code == 403, r.text
    assert _visibility(glance, image, owner) == "community"


def test_member_cannot_make_others_members(make_gateway, glance, owner):
    # A member of a shared image is refused 403 adding someone else; the
    # image is shared already, so nothing is changed.
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "shared")
    member = unique("m")
    glance.add_v2_member(image, owner, member)
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("m")), member)
    assert r.status_code == 403, r.text
    assert glance.v2_members(image, owner) == {member}
    assert _visibility(glance, image, owner) == "shared"


def test_someone_elses_private_image_is_not_changed(make_gateway, glance, owner):
    gw = _gateway(make_gateway)
    image = glance.create_image(owner, "private")
    stranger = unique("stranger")
    r = v1(gw.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("m")), stranger)
    assert r.status_code in (403, 404), r.text
    assert _visibility(glance, image, owner) == "private"
    assert glance.v2_members(image, owner) == set()


def test_off_by_default_private_stays_private(gateway, glance, owner):
    image = glance.create_image(owner, "private")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, unique("m")), owner)
    assert r.status_code == 403, r.text
    assert _visibility(glance, image, owner) == "private"


# ---- failures the real Glance will not produce on demand --------------------

def _refusing_upstream(bad_upstream, patch_status, patch_body):
    image = "img-1"
    return image, bad_upstream("rules", rules=[
        {"method": "POST", "path": "/v2/images/%s/members$" % image, "status": 403,
         "body": {"message": "Only shared images have members."}},
        {"method": "GET", "path": "/v2/images/%s$" % image, "status": 200,
         "body": {"id": image, "visibility": "private", "owner": "o"}},
        {"method": "PATCH", "path": "/v2/images/%s$" % image, "status": patch_status,
         "body": patch_body},
    ])


def test_visibility_change_refused_is_reported(make_gateway, bad_upstream):
    image, up = _refusing_upstream(bad_upstream, 403,
                                   {"message": "You are not permitted to modify 'visibility'"})
    gw = _gateway(make_gateway, upstream=up)
    r = v1(gw.url, "PUT", "/v1/images/%s/members/m1" % image, "o",
           body={"members": [{"member_id": "m1"}, {"member_id": "m2"}]})
    assert r.status_code == 403, r.text
    results = r.json()["results"]
    assert [x["member_id"] for x in results] == ["m1", "m2"]
    for x in results:
        assert x["done"] is False and x["status"] == 403
        assert "could not be made shared" in x["message"]
        assert "not permitted to modify" in x["message"]
    seen = up.requests_seen()
    assert sum(" PATCH " in line for line in seen) == 1          # looked at once, changed once
    assert sum(" POST " in line for line in seen) == 2           # not sent again
    # the PATCH carries the caller's headers and the JSON-patch media type
    patch = [line for line in seen if " PATCH " in line]
    assert patch and patch[0].endswith("/v2/images/%s" % image)


def test_visibility_change_failing_upstream_is_502(make_gateway, bad_upstream):
    image, up = _refusing_upstream(bad_upstream, 500, {"message": "boom"})
    gw = _gateway(make_gateway, upstream=up)
    r = v1(gw.url, "PUT", "/v1/images/%s/members/m1" % image, "o")
    assert r.status_code == 502, r.text
    assert "could not be made shared" in r.json()["results"][0]["message"]


def test_visibility_patch_request_shape(make_gateway, bad_upstream):
    image = "img-2"
    up = bad_upstream("rules", rules=[
        {"method": "POST", "path": "/v2/images/%s/members$" % image, "status": 403,
         "body": {"message": "Only shared images have members."}},
        {"method": "GET", "path": "/v2/images/%s$" % image, "status": 200,
         "body": {"id": image, "visibility": "private"}},
        {"method": "PATCH", "path": "/v2/images/%s$" % image, "status": 200,
         "body": {"id": image, "visibility": "shared"}},
    ])
    gw = _gateway(make_gateway, upstream=up)
    r = v1(gw.url, "PUT", "/v1/images/%s/members/m1" % image, "o")
    # the add is sent again once; the scripted upstream refuses it again
    assert r.status_code == 403, r.text
    lines = harness.read_text(up.events).splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("request ") and " PATCH " in line]
    assert len(start) == 1
    conn = lines[start[0]].split()[1]
    headers, body = {}, None
    for line in lines[start[0] + 1:]:
        parts = line.split(" ", 2)
        if parts[1] != conn:
            continue
        if parts[0] == "request":
            break
        if parts[0] == "header":
            name, _, value = parts[2].partition(": ")
            headers[name.lower()] = value
        elif parts[0] == "body":
            body = parts[2]
    assert json.loads(body) == [{"op": "replace", "path": "/visibility", "value": "shared"}]
    assert headers["content-type"] == "application/openstack-images-v2.1-json-patch"
    assert headers["x-auth-token"] == harness.SECRET_TOKEN      # the caller's own token
    assert headers["x-project-id"] == "o"
    assert sum(" POST " in line for line in up.requests_seen()) == 2
