"""Smoke test of the real Keystone + Glance (keystone paste flavor) stack in
keystone_stack.py, and the Glance/Keystone facts that [members] accept and
share_private_images rely on. No gateway here: every call goes straight to
Glance v2 with real tokens."""

import json
import time
from datetime import datetime

import requests

from keystone_stack import Keystone

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
TO_SHARED = json.dumps([{"op": "replace", "path": "/visibility", "value": "shared"}])


def members_path(image, member=None):
    return "/v2/images/%s/members" % image + ("/%s" % member if member else "")


def message(r):
    """Glance's JSON error message without its HTML line breaks."""
    return r.json()["message"].split("<br />")[0]


def test_keystone_over_tls(keystone, pki):
    r = requests.get(keystone.tls_auth_url, verify=str(pki.ca_cert), timeout=10)
    assert r.status_code == 200, r.text
    # X-Forwarded-Proto from nginx: Keystone's own links say https
    assert r.json()["version"]["links"][0]["href"].startswith(keystone.tls_url + "/v3")
    account = keystone.make_account()
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": account.username, "domain": {"name": "Default"},
        "password": account.password}}},
        "scope": {"project": {"id": account.project_id}}}}
    r = requests.post(keystone.tls_auth_url + "/auth/tokens", json=body,
                      verify=str(pki.ca_cert), timeout=10)
    assert r.status_code == 201, r.text
    assert keystone.validate(r.headers["X-Subject-Token"]) == 200


def test_glance_over_tls_with_token(keystone, keystone_glance, pki):
    t = keystone.make_account().token()
    r = requests.get(keystone_glance.tls_url + "/v2/images", verify=str(pki.ca_cert),
                     headers={"X-Auth-Token": t}, timeout=10)
    assert r.status_code == 200, r.text


def test_service_auth_settings(keystone, gateway_service_account, pki):
    sa = gateway_service_account.service_auth()
    assert sa["auth_url"] == keystone.tls_auth_url
    assert sa["project_name"] == "service" and sa["ca_file"] == str(pki.ca_cert)
    t = gateway_service_account.token()
    r = keystone.request("GET", "/auth/tokens", token=keystone.admin_token(),
                         headers={"X-Subject-Token": t})
    assert r.status_code == 200
    assert {x["name"] for x in r.json()["token"]["roles"]} >= {"admin", "member", "reader"}


# -- fact 1: the service user accepts on the member's behalf -----------------

def test_service_user_accepts_member(keystone, keystone_glance, gateway_service_account):
    g = keystone_glance
    owner, member = keystone.make_account(), keystone.make_account()
    t_owner, t_member = owner.token(), member.token()
    image = g.create_image_as(t_owner, "shared")
    r = g.call("POST", members_path(image), t_owner, json={"member": member.project_id})
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    assert image not in g.image_ids_as(t_member)
    assert image in g.image_ids_as(t_member, member_status="all")

    # the owner may not set the status
    r = g.call("PUT", members_path(image, member.project_id), t_owner,
               json={"status": "accepted"})
    assert r.status_code == 403, r.text
    assert message(r) == "Not allowed to update members for image %s." % image
    # a third project (member role) does not even see the image
    r = g.call("PUT", members_path(image, member.project_id), keystone.make_account().token(),
               json={"status": "accepted"})
    assert r.status_code == 404, r.text

    # admin on the service project may (Glance: any admin role is admin)
    r = g.call("PUT", members_path(image, member.project_id), gateway_service_account.token(),
               json={"status": "accepted"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted" and r.json()["member_id"] == member.project_id
    assert image in g.image_ids_as(t_member)
    assert g.members_as(image, t_owner) == {member.project_id: "accepted"}


# -- fact 2: private images refuse members until made shared -------------------

def test_private_image_refuses_members_until_patched_shared(keystone, keystone_glance):
    g = keystone_glance
    owner, member = keystone.make_account(), keystone.make_account()
    t_owner = owner.token()
    image = g.create_image_as(t_owner, "private")
    r = g.call("POST", members_path(image), t_owner, json={"member": member.project_id})
    assert r.status_code == 403, r.text
    assert message(r) == "Not allowed to create members for image %s." % image

    # another project cannot see it, let alone change it
    t_other = member.token()
    r = g.call("PATCH", "/v2/images/%s" % image, t_other, data=TO_SHARED,
               headers={"Content-Type": PATCH_TYPE})
    assert r.status_code == 404, r.text

    r = g.call("PATCH", "/v2/images/%s" % image, t_owner, data=TO_SHARED,
               headers={"Content-Type": PATCH_TYPE})
    assert r.status_code == 200, r.text
    assert r.json()["visibility"] == "shared"
    r = g.call("POST", members_path(image), t_owner, json={"member": member.project_id})
    assert r.status_code == 200, r.text


def test_public_and_community_images_refuse_members(keystone, keystone_glance,
                                                    gateway_service_account):
    g = keystone_glance
    owner, member = keystone.make_account(), keystone.make_account()
    t_admin = gateway_service_account.token()  # public images need admin
    for token, visibility in ((t_admin, "public"), (owner.token(), "community")):
        image = g.create_image_as(token, visibility)
        r = g.call("POST", members_path(image), token, json={"member": member.project_id})
        assert r.status_code == 403, (visibility, r.text)
        assert message(r) == "Not allowed to create members for image %s." % image


# -- fact 5: tokens Keystone rejects -------------------------------------------

def test_garbage_or_missing_token_is_401(keystone, keystone_glance):
    g = keystone_glance
    owner = keystone.make_account()
    image = g.create_image_as(owner.token(), "shared")
    for token in ("garbage-token", None):
        r = g.call("POST", members_path(image), token, json={"member": "someone"})
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == 401
        assert r.headers["WWW-Authenticate"] == 'Keystone uri="%s/v3"' % keystone.url
    # identity headers without a token are not trusted in this flavor
    r = g.call("GET", "/v2/images", None, headers={
        "X-Identity-Status": "Confirmed", "X-Project-Id": owner.project_id,
        "X-Roles": "admin"})
    assert r.status_code == 401, r.text


# -- fact 4: revocation is seen by Glance at once ---------------------------------

def test_revoked_token_refused_at_once(keystone, keystone_glance):
    g = keystone_glance
    account = keystone.make_account()
    token = account.token()
    assert g.call("GET", "/v2/images", token).status_code == 200
    keystone.revoke_token(token)
    assert g.call("GET", "/v2/images", token).status_code == 401
    Keystone.wait_after_revocation()
    assert g.call("GET", "/v2/images", account.token()).status_code == 200


def test_disable_and_enable_user_revokes_its_tokens(keystone, keystone_glance):
    g = keystone_glance
    svc = keystone.make_service_user("svc-%d" % time.monotonic_ns())
    old = svc.token()
    assert g.call("GET", "/v2/images", old).status_code == 200
    svc.disable()
    svc.enable()
    assert g.call("GET", "/v2/images", old).status_code == 401
    Keystone.wait_after_revocation()
    new = svc.token()
    assert g.call("GET", "/v2/images", new).status_code == 200
    assert g.call("GET", "/v2/images", old).status_code == 401


def test_password_change_revokes_tokens(keystone, keystone_glance):
    g = keystone_glance
    account = keystone.make_account()
    old = account.token()
    account.set_password("another-password-1")
    assert g.call("GET", "/v2/images", old).status_code == 401
    Keystone.wait_after_revocation()
    assert g.call("GET", "/v2/images", account.token()).status_code == 200


# -- fact 3: short-lived tokens ----------------------------------------------------

def test_short_tokens_expire(keystone_short_stack):
    keystone, g = keystone_short_stack
    account = keystone.make_account()
    r = keystone.issue(account.username, account.password, project_id=account.project_id)
    assert r.status_code == 201
    token = r.headers["X-Subject-Token"]
    body = r.json()["token"]
    lifetime = (_parse(body["expires_at"]) - _parse(body["issued_at"]))
    assert abs(lifetime - keystone.token_expiration) < 1.5, body
    assert g.call("GET", "/v2/images", token).status_code == 200
    deadline = time.time() + keystone.token_expiration + 5
    while g.call("GET", "/v2/images", token).status_code == 200:
        assert time.time() < deadline, "token still accepted after its expiry"
        time.sleep(0.25)
    assert g.call("GET", "/v2/images", token).status_code == 401
    assert time.time() >= _parse(body["expires_at"]) - 1.0
    # and a new one works (Glance's own service token is renewed too)
    assert g.call("GET", "/v2/images", account.token()).status_code == 200


def _parse(stamp):
    """Keystone's "2026-11-22T08:47:18.000000Z" -> epoch seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
