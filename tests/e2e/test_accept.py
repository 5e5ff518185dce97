"""[members] accept with real Keystone: a member added through the gateway
sees the image in its default image list at once, as in v1. Keystone and
Glance (keystone paste flavor, no token cache) are Debian's; the gateway
reaches both over verified TLS; every caller sends a real Keystone token.

Also the service token's lifecycle (single flight, refresh before expiry,
one re-authentication after a revocation, wrong password), share_private_images
with real tokens, and the configuration checks for [service_auth]."""

import json
import subprocess
import sys
import threading
import time

import pytest
import requests

import harness
import keystone_stack
from harness import unique

OBTAINED = "service_auth: obtained a token"
REFUSED_401 = "refused the gateway's service token (401)"


def call(gw, method, path, token, body=None):
    """One v1 call to the gateway with a real token (remembered so that the
    teardown checks it never reached a log)."""
    gw.secrets = getattr(gw, "secrets", []) + [token]
    headers = {"X-Auth-Token": token}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body)
    return requests.request(method, gw.url + path, headers=headers, data=data, timeout=90)


def add_v2(glance, image, token, member):
    """A member added straight to Glance (pending), not through the gateway."""
    r = glance.call("POST", "/v2/images/%s/members" % image, token, json={"member": member})
    assert r.status_code == 200, r.text


def log_count(gw, needle):
    return sum(needle in line for line in gw.stderr_text().splitlines())


def gateway_for(make_gateway, glance, account, **settings):
    # Each worker thread keeps its own service token: one worker, so that
    # the token counts below are exact.
    settings.setdefault("workers", 1)
    return make_gateway(upstream=glance.tls_url, service_auth=account.service_auth(), **settings)


@pytest.fixture
def owner_account(keystone):
    return keystone.make_account(name="owner")


@pytest.fixture
def member_account(keystone):
    return keystone.make_account(name="member")


@pytest.fixture
def accept_gateway(make_gateway, keystone_glance, gateway_service_account):
    return gateway_for(make_gateway, keystone_glance, gateway_service_account, accept="true")


# ---- the v1 behaviour restored -----------------------------------------------

def test_member_sees_image_at_once_with_accept(accept_gateway, keystone_glance,
                                               owner_account, member_account):
    owner_token, member_token = owner_account.token(), member_account.token()
    image = keystone_glance.create_image_as(owner_token)
    assert image not in keystone_glance.image_ids_as(member_token)

    r = call(accept_gateway, "PUT", "/v1/images/%s/members/%s" % (image, member_account.project_id),
             owner_token)
    assert r.status_code == 204, r.text

    # right away, in the member's default list (no member_status filter)
    visible = image in keystone_glance.image_ids_as(member_token)
    status = keystone_glance.members_as(image, owner_token)
    sys.stderr.write("\n[accept=true] v1 PUT /v1/images/%s/members/%s -> %d; member's default "
                     "GET /v2/images lists the image: %s; member status: %s\n"
                     % (image, member_account.project_id, r.status_code, visible, status))
    assert visible
    assert status == {member_account.project_id: "accepted"}
    assert log_count(accept_gateway, OBTAINED) == 1


def test_member_does_not_see_image_without_accept(make_gateway, keystone_glance,
                                                  owner_account, member_account):
    gw = make_gateway(upstream=keystone_glance.tls_url)
    owner_token, member_token = owner_account.token(), member_account.token()
    image = keystone_glance.create_image_as(owner_token)
    r = call(gw, "PUT", "/v1/images/%s/members/%s" % (image, member_account.project_id), owner_token)
    assert r.status_code == 204, r.text
    assert image not in keystone_glance.image_ids_as(member_token)
    assert image in keystone_glance.image_ids_as(member_token, member_status="all")
    assert keystone_glance.members_as(image, owner_token) == {member_account.project_id: "pending"}


def test_bulk_add_every_member_accepted(accept_gateway, keystone_glance, owner_account):
    token = owner_account.token()
    image = keystone_glance.create_image_as(token)
    members = [unique("p") for _ in range(30)]
    r = call(accept_gateway, "PUT", "/v1/images/%s/members/%s" % (image, members[0]), token,
             body={"members": [{"member_id": m} for m in members]})
    assert r.status_code == 204, r.text
    assert keystone_glance.members_as(image, token) == {m: "accepted" for m in members}


def test_replace_every_member_accepted(accept_gateway, keystone_glance, owner_account):
    # kept (pending before), added, removed
    token = owner_account.token()
    image = keystone_glance.create_image_as(token)
    kept, gone, new = unique("kept"), unique("gone"), unique("new")
    for m in (kept, gone):
        add_v2(keystone_glance, image, token, m)
    r = call(accept_gateway, "PUT", "/v1/images/%s/members" % image, token,
             body={"memberships": [{"member_id": kept}, {"member_id": new}]})
    assert r.status_code == 204, r.text
    assert keystone_glance.members_as(image, token) == {kept: "accepted", new: "accepted"}
    # the same replace again: nothing left to do but answer 204
    r = call(accept_gateway, "PUT", "/v1/images/%s/members" % image, token,
             body={"memberships": [{"member_id": kept}, {"member_id": new}]})
    assert r.status_code == 204, r.text


def test_readd_of_pending_member_accepts_it(accept_gateway, keystone_glance, owner_account,
                                            member_account):
    # added earlier without the gateway (pending): a v1 add converges
    token = owner_account.token()
    image = keystone_glance.create_image_as(token)
    m = member_account.project_id
    add_v2(keystone_glance, image, token, m)
    r = call(accept_gateway, "PUT", "/v1/images/%s/members/%s" % (image, m), token)
    assert r.status_code == 204, r.text
    assert keystone_glance.members_as(image, token) == {m: "accepted"}
    assert image in keystone_glance.image_ids_as(member_account.token())


def test_rejected_member_stays_rejected(accept_gateway, keystone_glance, owner_account,
                                        member_account):
    # The member said no (v2): a v1 add or replace by the owner does not
    # overturn that with the gateway's admin token.
    token = owner_account.token()
    image = keystone_glance.create_image_as(token)
    m = member_account.project_id
    add_v2(keystone_glance, image, token, m)
    r = keystone_glance.call("PUT", "/v2/images/%s/members/%s" % (image, m), member_account.token(),
                             json={"status": "rejected"})
    assert r.status_code == 200, r.text
    r = call(accept_gateway, "PUT", "/v1/images/%s/members/%s" % (image, m), token)
    assert r.status_code == 204, r.text
    r = call(accept_gateway, "PUT", "/v1/images/%s/members" % image, token,
             body={"memberships": [{"member_id": m}]})
    assert r.status_code == 204, r.text
    assert keystone_glance.members_as(image, token) == {m: "rejected"}
    assert log_count(accept_gateway, "rejected image %s; left rejected" % image) == 1


def test_no_accept_without_the_callers_own_write(make_gateway, bad_upstream,
                                                gateway_service_account):
    # A caller who may list but not add (the upstream refuses its POST 403)
    # gets no accept from the gateway's admin token: not for a pending member
    # a replace keeps, not for a re-add.
    up = bad_upstream("rules", rules=[
        {"method": "GET", "path": "/v2/images/i1/members$", "status": 200,
         "body": {"members": [{"member_id": "m1", "image_id": "i1", "status": "pending"}]}},
        {"method": "POST", "path": "/v2/images/i1/members$", "status": 403,
         "body": {"message": "You are not authorized to complete add_member action."}},
        {"method": "PUT", "path": ".*", "status": 200, "body": {"status": "accepted"}},
    ])
    gw = make_gateway(upstream=up, accept="true", service_auth=gateway_service_account.service_auth())
    for method, path, body in (("PUT", "/v1/images/i1/members", {"memberships": [{"member_id": "m1"}]}),
                               ("PUT", "/v1/images/i1/members/m1", None)):
        r = call(gw, method, path, "reader-token", body=body)
        assert r.status_code == 403, r.text
        assert [(x["member_id"], x["action"], x["done"]) for x in r.json()["results"]] == \
            [("m1", "add", False)]
    assert not any(" PUT " in line for line in up.requests_seen())
    assert log_count(gw, OBTAINED) == 0


def test_user_token_rejected_is_401_nothing_changed(accept_gateway, keystone_glance,
                                                    owner_account):
    token = owner_account.token()
    image = keystone_glance.create_image_as(token)
    r = call(accept_gateway, "PUT", "/v1/images/%s/members/%s" % (image, unique("p")),
             "gAAAAA-not-a-real-token")
    assert r.status_code == 401, r.text
    assert r.json()["results"][0]["status"] == 401
    assert [x["action"] for x in r.json()["results"]] == ["add"]   # no accept attempted
    assert keystone_glance.members_as(image, token) == {}
    assert log_count(accept_gateway, OBTAINED) == 0                 # nor a service token fetched


def test_accept_calls_carry_only_the_service_token(make_gateway, bad_upstream, keystone,
                                                   gateway_service_account):
    # SPEC section 3: the gateway's own calls never carry the caller's token
    # or identity headers. A scripted upstream records what it is sent.
    up = bad_upstream("rules", rules=[
        {"method": "POST", "path": "/v2/images/i1/members$", "status": 200,
         "body": {"member_id": "m1", "image_id": "i1", "status": "pending"}},
        {"method": "PUT", "path": "/v2/images/i1/members/m1$", "status": 200,
         "body": {"member_id": "m1", "image_id": "i1", "status": "accepted"}},
    ])
    gw = make_gateway(upstream=up, accept="true", service_auth=gateway_service_account.service_auth())
    r = requests.put(
        gw.url + "/v1/images/i1/members/m1",
        headers={"X-Auth-Token": "caller-token", "X-Project-Id": "caller-project",
                 "X-Roles": "member", "User-Agent": "legacy/1"}, timeout=60)
    assert r.status_code == 204, r.text
    headers = dict((k.lower(), v) for k, v in up.request_headers())   # the last call: the PUT
    assert any(" PUT /v2/images/i1/members/m1" in line for line in up.requests_seen())
    assert headers["x-auth-token"] != "caller-token"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["x-openstack-request-id"].startswith("req-")
    for h in ("x-project-id", "x-roles", "user-agent"):
        assert h not in headers, h
    # and it is a token Keystone issued to the service user
    assert keystone.validate(headers["x-auth-token"]) == 200
    gw.secrets = [headers["x-auth-token"]]
    events = harness.read_text(up.events)
    assert '"status": "accepted"' in events


# ---- the service token's lifecycle -------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_one_token_fetch_for_concurrent_requests(make_gateway, keystone_glance, owner_account,
                                                 gateway_service_account, workers):
    accept_gateway = gateway_for(make_gateway, keystone_glance, gateway_service_account,
                                 accept="true", workers=workers)
    token = owner_account.token()
    images = [keystone_glance.create_image_as(token) for _ in range(8)]
    results = []

    def add(image):
        members = [unique("p") for _ in range(5)]
        r = call(accept_gateway, "PUT", "/v1/images/%s/members/%s" % (image, members[0]), token,
                 body={"members": [{"member_id": m} for m in members]})
        results.append((r.status_code, image, members))

    threads = [threading.Thread(target=add, args=(i,)) for i in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(s for s, _, _ in results) == [204] * 8, results
    for _, image, members in results:
        assert keystone_glance.members_as(image, token) == {m: "accepted" for m in members}
    # one token per worker thread at most, however many requests wanted one
    assert 1 <= log_count(accept_gateway, OBTAINED) <= workers


def test_token_refreshed_before_expiry(make_gateway, keystone_short_stack):
    keystone, glance = keystone_short_stack
    svc = keystone_stack.gateway_service_user(keystone, name=unique("mb-short"))
    owner = keystone.make_account(name="owner")
    gw = gateway_for(make_gateway, glance, svc, accept="true")
    image = glance.create_image_as(owner.token())
    added = []
    deadline = time.monotonic() + 3 * keystone_stack_expiration()
    while time.monotonic() < deadline:
        m = unique("p")
        r = call(gw, "PUT", "/v1/images/%s/members/%s" % (image, m), owner.token())
        assert r.status_code == 204, r.text
        added.append(m)
        time.sleep(0.5)
    assert glance.members_as(image, owner.token()) == {m: "accepted" for m in added}
    fetched = log_count(gw, OBTAINED)
    # a token lives 7-8 s: 24 s of traffic needs a few fetches, refreshed
    # ahead of expiry, so the upstream never refused one
    assert 3 <= fetched <= 8, fetched
    assert log_count(gw, REFUSED_401) == 0


def keystone_stack_expiration():
    import conftest
    return conftest.SHORT_TOKEN_EXPIRATION


def test_revoked_service_token_reauthenticates_once(make_gateway, keystone, keystone_glance,
                                                    owner_account):
    svc = keystone_stack.gateway_service_user(keystone, name=unique("mb-revoke"))
    gw = gateway_for(make_gateway, keystone_glance, svc, accept="true")
    token = owner_account.token()
    image = keystone_glance.create_image_as(token)
    first = unique("p")
    assert call(gw, "PUT", "/v1/images/%s/members/%s" % (image, first), token).status_code == 204
    # revoke every token of the service user (disable + enable), then let
    # the revocation's second pass (fernet revocation has 1 s granularity)
    svc.disable()
    svc.enable()
    keystone.wait_after_revocation()
    second = unique("p")
    r = call(gw, "PUT", "/v1/images/%s/members/%s" % (image, second), token)
    assert r.status_code == 204, r.text
    assert keystone_glance.members_as(image, token) == {first: "accepted", second: "accepted"}
    assert log_count(gw, REFUSED_401) == 1
    assert log_count(gw, OBTAINED) == 2


def test_wrong_service_password_every_accept_fails_clearly(make_gateway, keystone,
                                                           keystone_glance, owner_account):
    svc = keystone_stack.gateway_service_user(keystone, name=unique("mb-wrong"))
    auth = svc.service_auth()
    auth["password"] = "wrong-" + svc.password
    gw = make_gateway(upstream=keystone_glance.tls_url, accept="true", service_auth=auth)
    token = owner_account.token()
    image = keystone_glance.create_image_as(token)
    members = [unique("p") for _ in range(3)]
    r = call(gw, "PUT", "/v1/images/%s/members/%s" % (image, members[0]), token,
             body={"members": [{"member_id": m} for m in members]})
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["error"]["message"] == "3 of 6 member operations failed"
    for m in members:
        entries = [x for x in body["results"] if x["member_id"] == m]
        assert [(x["action"], x["done"]) for x in entries] == [("add", True), ("accept", False)]
        assert "Keystone refused the service credentials (401)" in entries[1]["message"]
    # the adds are done, not accepted: re-sending with a fixed password converges
    assert keystone_glance.members_as(image, token) == {m: "pending" for m in members}
    # one fetch for the one request, one log line naming the user, no password
    errors = [line for line in gw.stderr_text().splitlines()
              if "service_auth:" in line and "refused the service credentials" in line]
    assert len(errors) == 1 and svc.username in errors[0], errors
    # the gateway keeps serving
    r = call(gw, "GET", "/v1/images/%s/members" % image, token)
    assert r.status_code == 200
    assert {x["member_id"] for x in r.json()["members"]} == set(members)
    time.sleep(1.2)   # past the failure hold: a second request asks Keystone again, fails again
    r = call(gw, "PUT", "/v1/images/%s/members/%s" % (image, members[0]), token)
    assert r.status_code == 502
    assert gw.alive()


def test_keystone_unreachable_is_502(make_gateway, keystone_glance, owner_account,
                                     gateway_service_account):
    auth = gateway_service_account.service_auth()
    auth["auth_url"] = "https://127.0.0.1:%d/v3" % harness.free_port()
    gw = make_gateway(upstream=keystone_glance.tls_url, accept="true", service_auth=auth,
                      retries=0, connect_timeout=2)
    token = owner_account.token()
    image = keystone_glance.create_image_as(token)
    m = unique("p")
    r = call(gw, "PUT", "/v1/images/%s/members/%s" % (image, m), token)
    assert r.status_code == 502, r.text
    accept = r.json()["results"][1]
    assert accept["action"] == "accept" and not accept["done"]
    assert "Keystone could not be reached" in accept["message"]
    assert keystone_glance.members_as(image, token) == {m: "pending"}


# ---- share_private_images with real tokens ------------------------------------

def test_private_image_made_shared_and_member_sees_it(make_gateway, keystone_glance,
                                                      gateway_service_account, owner_account,
                                                      member_account):
    gw = gateway_for(make_gateway, keystone_glance, gateway_service_account, accept="true",
                     share_private_images="true")
    token = owner_account.token()
    image = keystone_glance.create_image_as(token, visibility="private")
    r = call(gw, "PUT", "/v1/images/%s/members/%s" % (image, member_account.project_id), token)
    assert r.status_code == 204, r.text
    assert keystone_glance.call("GET", "/v2/images/%s" % image, token).json()["visibility"] == "shared"
    assert image in keystone_glance.image_ids_as(member_account.token())


def test_public_image_left_alone(make_gateway, keystone, keystone_glance):
    gw = make_gateway(upstream=keystone_glance.tls_url, share_private_images="true")
    admin = keystone.admin_token()
    image = keystone_glance.create_image_as(admin, visibility="public")
    r = call(gw, "PUT", "/v1/images/%s/members/%s" % (image, unique("p")), admin)
    assert r.status_code == 403, r.text
    assert "Not allowed to create members" in r.json()["results"][0]["message"]
    assert keystone_glance.call("GET", "/v2/images/%s" % image, admin).json()["visibility"] == "public"


# ---- configuration --------------------------------------------------------------

def _check_config(mb_binary, tmp_path, text, mode=0o600):
    conf = tmp_path / "mb.conf"
    conf.write_text(text)
    conf.chmod(mode)
    return subprocess.run([mb_binary, "--check-config", "-c", str(conf)], capture_output=True,
                          text=True, timeout=30)


BASE = "[upstream]\nurl = https://127.0.0.1:1\n"
SERVICE = ("[service_auth]\nauth_url = https://127.0.0.1:2/v3\nusername = gw\n"
           "password = pa55-SECRET\nproject_name = service\n")


def test_check_config_needs_service_auth_for_accept(mb_binary, tmp_path):
    r = _check_config(mb_binary, tmp_path, BASE + "[members]\naccept = true\n")
    assert r.returncode != 0
    assert ("[members] accept = true needs the gateway's own Keystone credentials: "
            "set [service_auth] auth_url, username, password, project_name") in r.stderr
    r = _check_config(mb_binary, tmp_path, BASE + "[members]\naccept = true\n" + SERVICE)
    assert r.returncode == 0, r.stderr


def test_world_readable_config_with_password_refused(mb_binary, tmp_path):
    r = _check_config(mb_binary, tmp_path, BASE + "[members]\naccept = true\n" + SERVICE,
                      mode=0o644)
    assert r.returncode != 0
    assert "every user may read it (mode 0644)" in r.stderr
    assert "pa55-SECRET" not in r.stderr + r.stdout
    # and the gateway itself refuses to start with it
    p = subprocess.run([mb_binary, "-c", str(tmp_path / "mb.conf")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0 and "every user may read it" in p.stderr
