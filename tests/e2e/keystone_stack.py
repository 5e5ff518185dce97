"""A real Keystone and a Glance that trusts it, for the end-to-end tests of
the features that need real tokens ([members] accept, share_private_images,
[service_auth]).

- Keystone: Debian's python3-keystone (Zed, 22.x), sqlite, fernet tokens,
  served by werkzeug's threaded WSGI server on 127.0.0.1 (plain http), and
  over TLS by nginx with the harness PKI's 127.0.0.1 certificate
  (Keystone.tls_url, Keystone.tls_auth_url).
- KeystoneGlance: harness.Glance in the `keystone` paste flavor
  (keystonemiddleware auth_token in the pipeline, token caching off, so a
  revoked token is refused at once), fronted by nginx TLS (tls_url).

Like harness.py this does not import pytest; every process is a harness.Proc,
so harness.stop_all() cleans up.

Facts checked against these servers (tests/e2e/test_keystone_stack.py):
- admin on any project is admin to Glance (context_is_admin = role:admin), so
  a service user with admin on the "service" project may PUT a member's
  status, which the image owner may not.
- A token's expiry is enforced by Keystone to the second; keystonemiddleware
  with token_cache_time = -1 asks Keystone for every request.
- Fernet revocation events have one-second granularity: a token issued in
  the same second as a revocation (user disabled, password changed, token
  revoked...) is refused too. Wait more than a second before fetching the
  replacement (Keystone.wait_after_revocation()).
"""

import base64
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests

import harness
from harness import LOCAL, PYTHON, HarnessError, Proc, free_port, make_workdir, tail

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-secret"
ADMIN_PROJECT = "admin"
SERVICE_PROJECT = "service"
REGION = "RegionOne"
DOMAIN = "default"  # the Default domain's id

GLANCE_SERVICE_USER = "glance"
GATEWAY_SERVICE_USER = "memberbridge"

KEYSTONE_CONF = """\
[DEFAULT]
debug = false
log_file = {dir}/keystone.log
use_stderr = false

[database]
connection = sqlite:///{dir}/keystone.sqlite

[token]
provider = fernet
expiration = {expiration}

[fernet_tokens]
key_repository = {dir}/fernet-keys
max_active_keys = 3

[fernet_receipts]
key_repository = {dir}/fernet-keys

[credential]
key_repository = {dir}/credential-keys

[identity]
password_hash_rounds = 4
# bcrypt uses 72 bytes at most; a larger limit logs a warning per password
max_password_length = 72

[oslo_middleware]
# nginx (TLS) sends X-Forwarded-Proto: https, so that Keystone's own links
# (GET /v3) say https when reached through it.
enable_proxy_headers_parsing = true

[oslo_policy]
policy_file = {dir}/policy.yaml

[cache]
# Keystone's in-process cache (what memcached is in production): validating a
# token costs about 80 ms of sqlite queries without it. Keystone invalidates
# it on revocation, disabling, role changes, so behaviour does not change.
enabled = {cache}
backend = dogpile.cache.memory
"""

# One process does what keystone-manage db_sync and bootstrap do (each
# keystone-manage run costs more than 2 s of imports), then serves the
# public application with werkzeug's threaded server. The fernet and
# credential keys are written by the harness (they are just Fernet keys).
KEYSTONE_SERVER = r"""
import sys, time
t0 = time.monotonic()
conf, port, fresh = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "fresh"
boot = dict(a.split("=", 1) for a in sys.argv[4:])
sys.argv = sys.argv[:1]  # oslo.config would parse them

import keystone.conf
import keystone.server
from keystone.server import backends
from keystone.server.flask import application
from keystone.server.flask import core as flask_core

keystone.server.configure(config_files=[conf])
if fresh:
    from keystone.common.sql import upgrades
    upgrades.offline_sync_database_to_version()
    from keystone.cmd import bootstrap
    b = bootstrap.Bootstrapper()  # loads the backends
    b.admin_username = boot["username"]
    b.admin_password = boot["password"]
    b.project_name = boot["project"]
    b.admin_role_name = "admin"
    b.service_name = "keystone"
    b.region_id = boot["region"]
    b.public_url = b.internal_url = b.admin_url = boot["url"]
    b.immutable_roles = True
    b.bootstrap()
else:
    backends.load_backends()
app = flask_core.setup_app_middleware(application.application_factory("public"))

from werkzeug.serving import make_server
server = make_server("127.0.0.1", port, app, threaded=True)
sys.stderr.write("keystone serving on 127.0.0.1:%d after %.2fs\n" % (port, time.monotonic() - t0))
sys.stderr.flush()
server.serve_forever()
"""


def _fernet_key():
    return base64.urlsafe_b64encode(os.urandom(32))


class Keystone:
    """A real Keystone on 127.0.0.1 (plain http at url, and at tls_url through
    nginx when a PKI is given), bootstrapped with an admin user and project,
    the roles admin/member/reader (admin implies member implies reader), a
    RegionOne identity endpoint, and a "service" project."""

    def __init__(self, workdir=None, token_expiration=3600, pki=None, name="keystone",
                 cache=True):
        self.name = name
        self.cache = cache
        self.token_expiration = token_expiration
        self.pki = pki
        self.dir = Path(workdir) if workdir else make_workdir(name)
        self.port = None
        self.proc = None
        self.tls = None
        self.session = requests.Session()
        self._admin_token = None
        self._admin_token_until = 0.0
        self.service_project_id = None
        self.start_seconds = None  # how long start() took

    # files -----------------------------------------------------------------
    def _write_files(self):
        d = self.dir
        for sub in ("fernet-keys", "credential-keys"):
            repo = d / sub
            if not repo.exists():
                repo.mkdir(mode=0o700)
                for n in ("0", "1"):  # 0 = staged key, highest = primary
                    (repo / n).write_bytes(_fernet_key())
                    (repo / n).chmod(0o600)
        (d / "policy.yaml").write_text("# defaults only\n")
        (d / "keystone-server.py").write_text(KEYSTONE_SERVER)
        (d / "keystone.conf").write_text(
            KEYSTONE_CONF.format(dir=d, expiration=self.token_expiration,
                                 cache="true" if self.cache else "false"))

    @property
    def url(self):
        """http://127.0.0.1:port (no /v3)."""
        return "http://%s:%d" % (LOCAL, self.port)

    @property
    def auth_url(self):
        return self.url + "/v3"

    @property
    def tls_url(self):
        """https://127.0.0.1:port through nginx (no /v3)."""
        if not self.tls:
            raise HarnessError("Keystone was started without a PKI: no TLS")
        return self.tls.url

    @property
    def tls_auth_url(self):
        return self.tls_url + "/v3"

    @property
    def log_path(self):
        return self.dir / "keystone.log"

    def log_text(self):
        return harness.read_text(self.log_path)

    # lifecycle -------------------------------------------------------------
    def start(self, timeout=60):
        """Start (or start again after stop(), on the same port, so that the
        catalog and Glance's configuration still hold)."""
        t0 = time.monotonic()
        fresh = not (self.dir / "keystone.sqlite").exists()
        if self.port is None:
            self.port = free_port()
        self._write_files()
        argv = [PYTHON, self.dir / "keystone-server.py", self.dir / "keystone.conf",
                self.port, "fresh" if fresh else "again",
                "username=" + ADMIN_USER, "password=" + ADMIN_PASSWORD,
                "project=" + ADMIN_PROJECT, "region=" + REGION,
                "url=" + "http://%s:%d/v3" % (LOCAL, self.port)]
        self.proc = Proc(self.name, argv, self.dir / "keystone.stderr")
        try:
            harness.wait_http_ok(self.auth_url, self.proc, timeout, what="keystone GET /v3")
        except HarnessError as e:
            raise HarnessError("%s\nkeystone.log:\n%s" % (e, tail(self.log_path))) from None
        if fresh:
            self.service_project_id = self.create_project(SERVICE_PROJECT)
        else:
            self.service_project_id = self.project_id(SERVICE_PROJECT)
        if self.pki is not None and self.tls is None:
            self.tls = harness.TlsTerminator(self.pki, self.port, name=self.name + "-nginx",
                                             health_path="/v3", forwarded_proto=True).start()
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout=10, tls=True):
        """Stop Keystone, and its nginx unless tls is False (then the TLS port
        answers 502 until start())."""
        if tls and self.tls:
            self.tls.stop()
            self.tls = None
        if self.proc:
            self.proc.stop(timeout)
            self.proc = None
        self._admin_token = None

    def restart(self):
        self.stop(tls=False)
        return self.start()

    # raw calls ---------------------------------------------------------------
    def request(self, method, path, token=None, **kw):
        """One call to Keystone (plain http); path below /v3."""
        headers = {"Accept": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        headers.update(kw.pop("headers", {}))
        return self.session.request(method, self.auth_url + path, headers=headers,
                                    timeout=30, **kw)

    def _admin(self, method, path, expect, **kw):
        r = self.request(method, path, token=self.admin_token(), **kw)
        if r.status_code not in expect:
            raise HarnessError("keystone %s %s: %s %s" % (method, path, r.status_code,
                                                          r.text[:500]))
        return r

    # tokens ----------------------------------------------------------------
    def issue(self, user, password, project=None, project_id=None, user_id=None):
        """POST /v3/auth/tokens with password auth (user by name in the Default
        domain, or by id); scoped to a project by name (Default domain) or id,
        or unscoped. Returns the requests.Response."""
        u = {"id": user_id} if user_id else {"name": user, "domain": {"id": DOMAIN}}
        u["password"] = password
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": u}}}}
        if project_id:
            body["auth"]["scope"] = {"project": {"id": project_id}}
        elif project:
            body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": DOMAIN}}}
        return self.session.post(self.auth_url + "/auth/tokens", json=body, timeout=30,
                                 headers={"Accept": "application/json"})

    def token(self, user, password, project=None, project_id=None):
        """A project-scoped token (the X-Subject-Token value)."""
        r = self.issue(user, password, project=project, project_id=project_id)
        if r.status_code != 201:
            raise HarnessError("token for %s: %s %s" % (user, r.status_code, r.text[:500]))
        return r.headers["X-Subject-Token"]

    def admin_token(self):
        """The bootstrap admin's token on the admin project, renewed when it
        is about to expire (tokens may be short-lived here)."""
        margin = min(60.0, self.token_expiration / 3.0)
        if self._admin_token is None or time.monotonic() > self._admin_token_until - margin:
            t = time.monotonic()
            self._admin_token = self.token(ADMIN_USER, ADMIN_PASSWORD, ADMIN_PROJECT)
            self._admin_token_until = t + self.token_expiration
        return self._admin_token

    def forget_admin_token(self):
        self._admin_token = None

    def validate(self, token):
        """GET /v3/auth/tokens as the admin: the status code (200 valid, 404
        not valid: expired, revoked or garbage)."""
        return self.request("GET", "/auth/tokens", token=self.admin_token(),
                            headers={"X-Subject-Token": token}).status_code

    def revoke_token(self, token):
        """DELETE /v3/auth/tokens: revoke this one token."""
        self._admin("DELETE", "/auth/tokens", (204,), headers={"X-Subject-Token": token})

    @staticmethod
    def wait_after_revocation():
        """Fernet tokens carry whole-second issue times and a revocation event
        also refuses tokens issued in its second: sleep past it before
        fetching a replacement."""
        time.sleep(1.1)

    # identity objects ----------------------------------------------------------
    def create_project(self, name=None):
        """A project in the Default domain; returns its id."""
        r = self._admin("POST", "/projects", (201,), json={"project": {
            "name": name or harness.unique("proj"), "domain_id": DOMAIN, "enabled": True}})
        return r.json()["project"]["id"]

    def project_id(self, name):
        r = self._admin("GET", "/projects", (200,), params={"name": name, "domain_id": DOMAIN})
        found = r.json()["projects"]
        if not found:
            raise HarnessError("no project %r" % name)
        return found[0]["id"]

    def project_name(self, project_id):
        r = self._admin("GET", "/projects/%s" % project_id, (200,))
        return r.json()["project"]["name"]

    def create_user(self, name=None, password=None, project_id=None):
        """A user in the Default domain; returns (id, name, password)."""
        name = name or harness.unique("user")
        password = password or "pw-" + uuid.uuid4().hex[:16]
        user = {"name": name, "password": password, "domain_id": DOMAIN, "enabled": True}
        if project_id:
            user["default_project_id"] = project_id
        r = self._admin("POST", "/users", (201,), json={"user": user})
        return r.json()["user"]["id"], name, password

    def role_id(self, role):
        r = self._admin("GET", "/roles", (200,), params={"name": role})
        found = r.json()["roles"]
        if not found:
            raise HarnessError("no role %r" % role)
        return found[0]["id"]

    def assign_role(self, user_id, project_id, role):
        """PUT /v3/projects/{p}/users/{u}/roles/{r}; role by name."""
        self._admin("PUT", "/projects/%s/users/%s/roles/%s"
                    % (project_id, user_id, self.role_id(role)), (204,))

    def set_user_enabled(self, user_id, enabled):
        self._admin("PATCH", "/users/%s" % user_id, (200,),
                    json={"user": {"enabled": bool(enabled)}})

    def disable_user(self, user_id):
        """Disabling a user revokes every token it holds (a revocation event)."""
        self.set_user_enabled(user_id, False)

    def enable_user(self, user_id):
        self.set_user_enabled(user_id, True)

    def set_password(self, user_id, password):
        """The admin sets a new password (this too revokes the user's tokens)."""
        self._admin("PATCH", "/users/%s" % user_id, (200,),
                    json={"user": {"password": password}})

    def make_account(self, roles=("member",), project_id=None, name=None):
        """A new project (unless project_id is given) and a user holding roles
        on it. admin implies member implies reader, so ("member",) gives a
        token the roles member and reader."""
        if project_id is None:
            project_id = self.create_project(harness.unique((name or "proj")))
        user_id, username, password = self.create_user(
            name=harness.unique(name or "user"), project_id=project_id)
        for role in roles:
            self.assign_role(user_id, project_id, role)
        return Account(self, user_id, username, password, project_id)

    def make_service_user(self, name, password=None):
        """A user holding admin on the service project (what a service such as
        glance or the gateway authenticates as)."""
        user_id, username, password = self.create_user(
            name=name, password=password or "svc-" + uuid.uuid4().hex[:16],
            project_id=self.service_project_id)
        self.assign_role(user_id, self.service_project_id, "admin")
        return Account(self, user_id, username, password, self.service_project_id,
                       project_name=SERVICE_PROJECT)


class Account:
    """A Keystone user and the project its tokens are scoped to."""

    def __init__(self, keystone, user_id, username, password, project_id, project_name=None):
        self.keystone = keystone
        self.user_id = user_id
        self.username = username
        self.password = password
        self.project_id = project_id
        self.project_name = project_name

    def token(self):
        """A fresh token scoped to project_id."""
        return self.keystone.token(self.username, self.password, project_id=self.project_id)

    def disable(self):
        self.keystone.disable_user(self.user_id)

    def enable(self):
        self.keystone.enable_user(self.user_id)

    def set_password(self, password):
        self.keystone.set_password(self.user_id, password)
        self.password = password

    def service_auth(self, tls=True):
        """The gateway's [service_auth] settings for this user (Keystone over
        TLS, CA = the harness PKI's, when tls)."""
        ks = self.keystone
        return {
            "auth_url": ks.tls_auth_url if tls else ks.auth_url,
            "username": self.username,
            "password": self.password,
            "user_domain_name": "Default",
            "project_name": self.project_name or ks.project_name(self.project_id),
            "project_domain_name": "Default",
            "ca_file": str(ks.pki.ca_cert) if tls else "",
        }

    def __repr__(self):
        return "<Account %s project %s>" % (self.username, self.project_id)


def gateway_service_user(keystone, name=GATEWAY_SERVICE_USER, password=None):
    """The gateway's own service user: admin on the service project. Returns
    an Account (username, password, project_name "service",
    service_auth() for the [service_auth] settings)."""
    return keystone.make_service_user(name, password=password)


# --------------------------------------------------------------------------
# Glance in the keystone paste flavor

GLANCE_KEYSTONE_PASTE = """
[pipeline:glance-api-keystone]
pipeline = healthcheck versionnegotiation authtoken context rootapp

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = false
"""

GLANCE_KEYSTONE_CONF = """
[keystone_authtoken]
www_authenticate_uri = {ks}/v3
auth_url = {ks}/v3
auth_type = password
username = {user}
password = {password}
user_domain_name = Default
project_name = {project}
project_domain_name = Default
region_name = {region}
interface = internal
# No token cache: every request is checked with Keystone, so a revoked or
# expired token is refused at once.
token_cache_time = -1
http_connect_timeout = 5
# Glance needs no service catalog in its request context.
include_service_catalog = false
service_token_roles_required = true
"""


class KeystoneGlance(harness.Glance):
    """harness.Glance with [paste_deploy] flavor = keystone: keystonemiddleware
    auth_token validates X-Auth-Token with the given Keystone (plain http), as
    a `glance` user holding admin on the service project; identity headers
    from the client are overwritten by the middleware. With a PKI, start()
    also starts nginx TLS in front of it (tls_url)."""

    def __init__(self, keystone, quota=128, workdir=None, name="glance-ks", pki=None,
                 extra_conf=None):
        """extra_conf: more glance-api.conf text (e.g. "[oslo_policy]\n
        enforce_new_defaults = true\n"), read after the main file."""
        self.keystone = keystone
        self.extra_conf = extra_conf
        self.pki = pki
        self.tls = None
        self.service = None  # the glance Account, made at first start
        self.start_seconds = None
        self.db_sync_seconds = None
        self._sync = None
        super().__init__(quota=quota, workdir=workdir, name=name)

    def _write_files(self):
        super()._write_files()
        paste = self.dir / "glance-api-paste.ini"
        paste.write_text(paste.read_text() + GLANCE_KEYSTONE_PASTE)

    def _write_conf(self):
        super()._write_conf()
        conf = self.dir / "glance-api.conf"
        text = conf.read_text()
        if "flavor = trusted" not in text:
            raise HarnessError("harness.GLANCE_CONF changed: no 'flavor = trusted' to replace")
        text = text.replace("flavor = trusted", "flavor = keystone")
        text += GLANCE_KEYSTONE_CONF.format(
            ks=self.keystone.url, user=self.service.username, password=self.service.password,
            project=SERVICE_PROJECT, region=REGION)
        conf.write_text(text)
        extra = self.dir / "confdir" / "extra.conf"  # --config-dir: read after --config-file
        if self.extra_conf:
            extra.write_text(self.extra_conf)
        elif extra.exists():
            extra.unlink()

    def _argv(self, module, *rest):
        # the config dir (extra_conf) after the main file, so that it overrides
        return [PYTHON, self.dir / ("glance-" + module),
                "--config-file", self.dir / "glance-api.conf",
                "--config-dir", self.dir / "confdir", *rest]

    @property
    def tls_url(self):
        if not self.tls:
            raise HarnessError("KeystoneGlance was started without a PKI: no TLS")
        return self.tls.url

    def db_sync(self):
        """glance-manage db_sync (needs no Keystone), so that it can run while
        Keystone starts; start() skips it once done."""
        if (self.dir / "glance.sqlite").exists():
            return self
        t0 = time.monotonic()
        self.port = self.port or free_port()
        harness.Glance._write_conf(self)  # only [database] matters here
        r = subprocess.run(self._argv("manage", "db_sync"), capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HarnessError("glance db_sync failed (%s):\n%s\n%s"
                               % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        self.db_sync_seconds = time.monotonic() - t0
        return self

    def db_sync_in_background(self):
        """db_sync() in a thread; start() waits for it."""
        self._sync_error = None

        def run():
            try:
                self.db_sync()
            except Exception as e:  # noqa: BLE001 - re-raised by start()
                self._sync_error = e

        self._sync = threading.Thread(target=run, name="dbsync-" + self.name, daemon=True)
        self._sync.start()
        return self

    def start(self, wait=True, timeout=60):
        t0 = time.monotonic()
        if self._sync is not None:
            self._sync.join()
            self._sync = None
            if self._sync_error:
                raise self._sync_error
        if self.service is None:
            self.service = self.keystone.make_service_user(
                harness.unique(GLANCE_SERVICE_USER))
        super().start(wait=wait, timeout=timeout)
        if wait and self.pki is not None and self.tls is None:
            self.tls = harness.TlsTerminator(self.pki, self.port, name=self.name + "-nginx").start()
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout=10):
        if self.tls:
            self.tls.stop()
            self.tls = None
        super().stop(timeout)

    # direct v2 calls with a real token (plain http, straight to Glance) -------
    def call(self, method, path, token, **kw):
        """One call with X-Auth-Token (no identity headers); JSON errors."""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["X-Auth-Token"] = token
        headers.update(kw.pop("headers", {}))
        return self.session.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def request(self, method, path, project, admin=False, **kw):
        raise HarnessError("KeystoneGlance trusts no identity headers: use call() with a token")

    def create_image_as(self, token, visibility="shared", name=None):
        """Create an image (owned by the token's project); returns its id."""
        body = {"name": name or harness.unique("img"), "visibility": visibility,
                "disk_format": "raw", "container_format": "bare"}
        r = self.call("POST", "/v2/images", token, json=body)
        if r.status_code != 201:
            raise HarnessError("create image: %s %s" % (r.status_code, r.text[:500]))
        return r.json()["id"]

    def members_as(self, image, token):
        """{member_id: status} as the token's project sees them."""
        r = self.call("GET", "/v2/images/%s/members" % image, token)
        if r.status_code != 200:
            raise HarnessError("list members: %s %s" % (r.status_code, r.text[:500]))
        return {m["member_id"]: m["status"] for m in r.json()["members"]}

    def image_ids_as(self, token, **params):
        """The ids in the token's project's GET /v2/images (by default: its
        own images, public ones, and shared ones whose membership it
        accepted; member_status="all" adds the pending and rejected)."""
        params.setdefault("limit", 20)
        ids, url = set(), "/v2/images"
        while url:
            r = self.call("GET", url, token, params=params if url == "/v2/images" else None)
            if r.status_code != 200:
                raise HarnessError("list images: %s %s" % (r.status_code, r.text[:500]))
            body = r.json()
            ids |= {i["id"] for i in body["images"]}
            url = body.get("next")
        return ids


def start_stack(pki=None, token_expiration=3600, name="keystone", quota=128):
    """A Keystone and a KeystoneGlance that trusts it, Glance's db_sync
    running while Keystone starts. Returns (keystone, glance); both are over
    TLS too when pki is given."""
    glance = KeystoneGlance(None, quota=quota, pki=pki, name="glance-" + name)
    glance.db_sync_in_background()
    keystone = Keystone(token_expiration=token_expiration, pki=pki, name=name)
    try:
        keystone.start()
        glance.keystone = keystone
        glance.start()
    except BaseException:
        glance.stop()
        keystone.stop()
        raise
    return keystone, glance
