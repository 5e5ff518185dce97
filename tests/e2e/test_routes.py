"""Each v1 membership route as the image owner, checked directly in Glance v2
(SPEC section 1)."""

import pytest

from harness import unique, v1


def members_of(n, prefix="m"):
    return [unique(prefix) for _ in range(n)]


def assert_json_error(r, code):
    assert r.status_code == code, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    err = r.json()["error"]
    assert err["code"] == code
    assert isinstance(err["title"], str) and err["title"]
    assert isinstance(err["message"], str)


def allow_set(r):
    return {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}


# -- add one -----------------------------------------------------------------

def test_add_one_without_body(gateway, glance, owner, shared_image):
    m = unique("m")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert glance.v2_members(shared_image, owner) == {m}


def test_add_one_with_member_body(gateway, glance, owner, shared_image):
    m = unique("m")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"member": {"can_share": False}})
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m}


def test_add_one_tempest_empty_member(gateway, glance, owner, shared_image):
    m = unique("m")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"member": {}})
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m}


def test_add_one_unknown_keys_ignored(gateway, glance, owner, shared_image):
    m = unique("m")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"whatever": [1, 2, {"x": None}], "member": {"can_share": False, "extra": 1}})
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m}


def test_add_to_image_with_existing_members(gateway, glance, owner, shared_image):
    old = unique("old")
    glance.add_v2_member(shared_image, owner, old)
    m = unique("m")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {old, m}


# -- bulk add ----------------------------------------------------------------

def test_bulk_add_50(gateway, glance, owner, shared_image):
    m = unique("path")
    listed = members_of(50)
    body = {"members": [{"member_id": x, "can_share": False} for x in listed]}
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner, body=body)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m, *listed}


def test_bulk_add_duplicates_sent_once(gateway, glance, owner, shared_image):
    m = unique("path")
    a, b = unique("a"), unique("b")
    body = {"members": [{"member_id": a}, {"member_id": b}, {"member_id": a},
                        {"member_id": m}]}
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner, body=body)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m, a, b}


def test_bulk_add_empty_list_adds_path_member(gateway, glance, owner, shared_image):
    m = unique("path")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, m), owner,
           body={"members": []})
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {m}


# -- replace -----------------------------------------------------------------

def test_replace_adds_and_removes(gateway, glance, owner, shared_image):
    a, b, c, d, e = members_of(5)
    for x in (a, b, c):
        glance.add_v2_member(shared_image, owner, x)
    body = {"memberships": [{"member_id": b}, {"member_id": c, "can_share": False},
                            {"member_id": d}, {"member_id": e, "can_share": False}]}
    r = v1(gateway.url, "PUT", "/v1/images/%s/members" % shared_image, owner, body=body)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {b, c, d, e}


def test_replace_with_empty_list_removes_all(gateway, glance, owner, shared_image):
    for x in members_of(3):
        glance.add_v2_member(shared_image, owner, x)
    r = v1(gateway.url, "PUT", "/v1/images/%s/members" % shared_image, owner,
           body={"memberships": []})
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == set()


def test_replace_on_image_without_members(gateway, glance, owner, shared_image):
    new = members_of(20)
    r = v1(gateway.url, "PUT", "/v1/images/%s/members" % shared_image, owner,
           body={"memberships": [{"member_id": x} for x in new]})
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == set(new)


# -- list --------------------------------------------------------------------

def test_list_members(gateway, glance, owner, shared_image):
    ms = members_of(3)
    for x in ms:
        glance.add_v2_member(shared_image, owner, x)
    r = v1(gateway.url, "GET", "/v1/images/%s/members" % shared_image, owner)
    assert r.status_code == 200, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json")
    got = r.json()
    assert set(got) == {"members"}
    for entry in got["members"]:
        assert entry == {"member_id": entry["member_id"], "can_share": False}
    assert sorted(e["member_id"] for e in got["members"]) == sorted(ms)
    assert glance.v2_members(shared_image, owner) == set(ms)


def test_list_members_of_image_without_members(gateway, glance, owner, shared_image):
    r = v1(gateway.url, "GET", "/v1/images/%s/members" % shared_image, owner)
    assert r.status_code == 200, r.text
    assert r.json() == {"members": []}


def test_list_members_of_private_image_is_empty(gateway, glance, owner):
    image = glance.create_image(owner, "private")
    r = v1(gateway.url, "GET", "/v1/images/%s/members" % image, owner)
    assert r.status_code == 200, r.text
    assert r.json() == {"members": []}


def test_list_members_of_missing_image_is_404(gateway, glance, owner):
    r = v1(gateway.url, "GET", "/v1/images/%s/members" % "00000000-0000-4000-8000-000000000000",
           owner)
    assert_json_error(r, 404)


# -- delete ------------------------------------------------------------------

def test_delete_member(gateway, glance, owner, shared_image):
    keep, gone = unique("keep"), unique("gone")
    glance.add_v2_member(shared_image, owner, keep)
    glance.add_v2_member(shared_image, owner, gone)
    r = v1(gateway.url, "DELETE", "/v1/images/%s/members/%s" % (shared_image, gone), owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(shared_image, owner) == {keep}


def test_delete_non_member_is_404(gateway, glance, owner, shared_image):
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    r = v1(gateway.url, "DELETE", "/v1/images/%s/members/%s" % (shared_image, unique("no")),
           owner)
    assert_json_error(r, 404)
    assert glance.v2_members(shared_image, owner) == {keep}


# -- shared-images -----------------------------------------------------------

def _shared_images(r):
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == {"shared_images"}
    for entry in got["shared_images"]:
        assert entry == {"image_id": entry["image_id"], "can_share": False}
    ids = [e["image_id"] for e in got["shared_images"]]
    assert len(ids) == len(set(ids)), ids
    return set(ids)


def test_shared_images_as_owner_and_as_member(gateway, glance):
    owner, other_owner = unique("owner"), unique("owner2")
    m, someone = unique("m"), unique("someone")
    i1 = glance.create_image(owner)
    i2 = glance.create_image(owner)
    i3 = glance.create_image(owner)          # shared with someone else only
    j1 = glance.create_image(other_owner)    # shared with m by another owner
    glance.create_image(owner, "private")
    for image, o in ((i1, owner), (i2, owner), (j1, other_owner)):
        glance.add_v2_member(image, o, m)
    glance.add_v2_member(i3, owner, someone)

    # The owner sees the images it shared with m, not the other owner's.
    r = v1(gateway.url, "GET", "/v1/shared-images/%s" % m, owner)
    assert _shared_images(r) == {i1, i2}
    # The member itself sees every image shared with it (pending included).
    r = v1(gateway.url, "GET", "/v1/shared-images/%s" % m, m)
    assert _shared_images(r) == {i1, i2, j1}
    # Nothing is shared with a stranger.
    r = v1(gateway.url, "GET", "/v1/shared-images/%s" % unique("stranger"), owner)
    assert _shared_images(r) == set()
    # Glance agrees.
    assert glance.v2_members(i1, owner) == {m}
    assert glance.v2_members(i3, owner) == {someone}


def test_shared_images_follows_pagination(gateway, glance):
    # Glance pages GET /v2/images (default limit 25): 30 images must all show.
    owner, m = unique("owner"), unique("m")
    images = {glance.create_image(owner) for _ in range(30)}
    for image in images:
        glance.add_v2_member(image, owner, m)
    r = v1(gateway.url, "GET", "/v1/shared-images/%s" % m, owner)
    assert _shared_images(r) == images


# -- 405 ---------------------------------------------------------------------

def test_get_one_member_is_405(gateway, glance, owner, shared_image):
    m = unique("m")
    glance.add_v2_member(shared_image, owner, m)
    r = v1(gateway.url, "GET", "/v1/images/%s/members/%s" % (shared_image, m), owner)
    assert_json_error(r, 405)
    assert allow_set(r) == {"PUT", "DELETE"}, r.headers.get("Allow")
    assert glance.v2_members(shared_image, owner) == {m}


def test_post_members_is_405(gateway, glance, owner, shared_image):
    r = v1(gateway.url, "POST", "/v1/images/%s/members" % shared_image, owner,
           body={"memberships": [{"member_id": unique("m")}]})
    assert_json_error(r, 405)
    assert allow_set(r) == {"GET", "PUT"}, r.headers.get("Allow")
    assert glance.v2_members(shared_image, owner) == set()


def test_delete_shared_images_is_405(gateway, glance, owner):
    r = v1(gateway.url, "DELETE", "/v1/shared-images/%s" % unique("m"), owner)
    assert_json_error(r, 405)
    assert allow_set(r) == {"GET"}, r.headers.get("Allow")


def test_post_one_member_is_405(gateway, glance, owner, shared_image):
    r = v1(gateway.url, "POST", "/v1/images/%s/members/%s" % (shared_image, unique("m")), owner)
    assert_json_error(r, 405)
    assert allow_set(r) == {"PUT", "DELETE"}, r.headers.get("Allow")
    assert glance.v2_members(shared_image, owner) == set()


# -- everything else ---------------------------------------------------------

def test_other_paths_are_proxied(gateway, glance, owner):
    # not a v1 membership call: the upstream's own answer (test_proxy.py has more)
    image = glance.create_image(owner)
    r = v1(gateway.url, "GET", "/v2/images/%s" % image, owner)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == image


def test_healthcheck(gateway):
    import requests
    r = requests.get(gateway.url + "/healthcheck", timeout=10)
    assert r.status_code == 200


def test_shared_images_over_max_per_request_is_413(make_gateway, glance):
    """More shared images than [members] max_per_request: an error, never a
    partial list that passes for the whole one."""
    gw = make_gateway(max_per_request=5)
    owner, m = unique("owner"), unique("m")
    for _ in range(22):      # the test Glance pages at 20
        glance.add_v2_member(glance.create_image(owner), owner, m)
    r = v1(gw.url, "GET", "/v1/shared-images/%s" % m, owner)
    assert r.status_code == 413, r.text
    assert "max_per_request" in r.json()["error"]["message"]


def test_replace_with_empty_list_on_private_image_is_204(gateway, glance, owner):
    """A private image has no members (v1 list says []), so replacing them
    with none is done; adding one is the upstream's 403 with results."""
    image = glance.create_image(owner, "private")
    r = v1(gateway.url, "PUT", "/v1/images/%s/members" % image, owner, body={"memberships": []})
    assert r.status_code == 204, r.text
    r = v1(gateway.url, "PUT", "/v1/images/%s/members" % image, owner,
           body={"memberships": [{"member_id": unique("m")}]})
    assert r.status_code == 403, r.text
    assert r.json()["results"][0]["done"] is False


# percent-encoded: an HTTP client library resolves a literal ".." itself
# (the literal forms are refused too: tests/unit/test_route.c)
@pytest.mark.parametrize("member", ["%2E%2E", "%2E", "%2e."])
def test_dot_segment_ids_are_refused(gateway, glance, owner, shared_image, member):
    """A proxy in front of the upstream resolves ".." in a path even when
    percent-encoded: such ids never go upstream."""
    keep = unique("keep")
    glance.add_v2_member(shared_image, owner, keep)
    for method in ("PUT", "DELETE"):
        r = v1(gateway.url, method, "/v1/images/%s/members/%s" % (shared_image, member), owner)
        assert_json_error(r, 400)
    r = v1(gateway.url, "PUT", "/v1/images/%s/members/%s" % (shared_image, unique("m")), owner,
           body={"members": [{"member_id": ".."}]})
    assert_json_error(r, 400)
    assert glance.v2_members(shared_image, owner) == {keep}
