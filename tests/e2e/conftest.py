"""pytest fixtures for the memberbridge end-to-end suite.

One PKI, one Glance (member quota 128) and one nginx TLS terminator serve the
whole session; tests keep apart by using their own projects and images. A
second Glance with a member quota of 5 is started on first use. The gateway
binary comes from $MB_BINARY. Every gateway a test uses is checked when the
test ends: no sanitizer report and no X-Auth-Token value in its logs; a
gateway the test stops itself must also exit 0 on SIGTERM.
"""

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import SECRET_TOKEN, sanitizer_errors  # noqa: E402

QUOTA_GLANCE_QUOTA = 5


# --------------------------------------------------------------------------
# work directory and failure reports

def _terminated(signum, frame):
    # Killed from outside (CI timeout): take every child down with us.
    harness.stop_all()
    os._exit(128 + signum)


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _terminated)
    if not os.environ.get("MB_E2E_WORKDIR"):
        d = tempfile.mkdtemp(prefix="mb-e2e-")
        os.environ["MB_E2E_WORKDIR"] = d
        config._mb_tmp_workdir = d  # removed at the end if everything passed


def pytest_sessionfinish(session, exitstatus):
    harness.stop_all()
    d = getattr(session.config, "_mb_tmp_workdir", None)
    if d:
        if exitstatus == 0:
            shutil.rmtree(d, ignore_errors=True)
        else:
            sys.stderr.write("\ne2e logs kept in %s\n" % d)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for gw in getattr(item, "_mb_gateways", []):
            report.sections.append(("gateway %s log (tail)" % gw.dir.name,
                                    harness.tail(gw.log_path, 60)))


def _remember(request, gw):
    request.node.__dict__.setdefault("_mb_gateways", []).append(gw)


def _log_problems(text, secrets=()):
    problems = ["sanitizer: " + line for line in sanitizer_errors(text)[:20]]
    if SECRET_TOKEN in text:
        problems.append("the X-Auth-Token value %r appears in the gateway log" % SECRET_TOKEN)
    for secret in secrets:
        if secret and secret in text:
            problems.append("a secret (%s...) appears in the gateway log" % secret[:3])
    return problems


# --------------------------------------------------------------------------
# the environment

@pytest.fixture(scope="session")
def mb_binary():
    path = os.environ.get("MB_BINARY")
    if not path:
        pytest.fail("MB_BINARY is not set (path to the built src/memberbridge)")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.fail("MB_BINARY=%s is not an executable file" % path)
    return path


@pytest.fixture(scope="session")
def pki():
    return harness.PKI()


_early = {}


@pytest.fixture(scope="session")
def glance(request):
    g = harness.Glance(quota=128, name="glance")
    # Start the quota Glance alongside when some collected test will use it.
    if any("glance_quota" in getattr(item, "fixturenames", ()) for item in request.session.items):
        _early["quota"] = harness.Glance(quota=QUOTA_GLANCE_QUOTA,
                                         name="glance-quota").start_in_background()
    try:
        g.start()
        yield g
    finally:
        g.stop()


@pytest.fixture(scope="session")
def glance_quota():
    g = _early.pop("quota", None)
    try:
        if g is None:
            g = harness.Glance(quota=QUOTA_GLANCE_QUOTA, name="glance-quota").start()
        else:
            g.join()
        yield g
    finally:
        if g is not None:
            g.stop()


@pytest.fixture(scope="session")
def tls(pki, glance):
    t = harness.TlsTerminator(pki, glance.port, name="nginx")
    try:
        t.start()
        yield t
    finally:
        t.stop()


@pytest.fixture(scope="session")
def tls_quota(pki, glance_quota):
    t = harness.TlsTerminator(pki, glance_quota.port, name="nginx-quota")
    try:
        t.start()
        yield t
    finally:
        t.stop()


# --------------------------------------------------------------------------
# gateways

class SharedGateway:
    """The session's default gateway (in front of tls/glance). Restarted if a
    test left it dead, so one crash does not fail every test after it."""

    def __init__(self, binary, tls, pki):
        self.binary, self.tls, self.pki = binary, tls, pki
        self.gw = None
        self.checked = {}  # log path -> length already checked
        self.generation = 0

    def get(self):
        if self.gw is None or not self.gw.alive():
            if self.gw is not None:
                self.gw.stop()
            self.generation += 1
            self.gw = harness.Gateway(self.binary, self.tls.url, self.pki.ca_cert,
                                      name="gateway-shared-%d" % self.generation)
            self.gw.start()
            self.checked = {}
        return self.gw

    def new_problems(self):
        """Problems in the logs (stderr, access log) written since the last
        call."""
        if self.gw is None:
            return []
        fresh = ""
        for path in (self.gw.log_path, self.gw.access_log_path):
            if path is None:
                continue
            text = harness.read_text(path)
            fresh += text[self.checked.get(path, 0):]
            self.checked[path] = len(text)
        problems = _log_problems(fresh)
        if self.gw.proc is not None and not self.gw.alive():
            problems.append("the shared gateway died (exit %s)" % self.gw.proc.popen.returncode)
        return problems

    def stop(self):
        if self.gw is None:
            return []
        rc, in_time = self.gw.stop()
        problems = self.new_problems()  # what it wrote since the last test, leak reports included
        if not in_time:
            problems.append("the shared gateway did not exit within 10 s of SIGTERM")
        elif rc != 0:
            problems.append("the shared gateway exited %s on SIGTERM" % rc)
        return problems


@pytest.fixture(scope="session")
def _shared_gateway(mb_binary, tls, pki):
    holder = SharedGateway(mb_binary, tls, pki)
    yield holder
    problems = holder.stop()
    if problems:
        pytest.fail("shared gateway at session end:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def gateway(request, _shared_gateway):
    """The shared gateway with the default configuration (SPEC section 4),
    upstream https://nginx -> Glance, CA = the test CA."""
    gw = _shared_gateway.get()
    _remember(request, gw)
    _shared_gateway.new_problems()  # only what this test causes counts
    yield gw
    problems = _shared_gateway.new_problems()
    if problems:
        pytest.fail("gateway log after this test:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def make_gateway(request, mb_binary, pki):
    """Factory: make_gateway(upstream=<url or object with .url>, **settings)
    starts a gateway with its own configuration; by default in front of the
    session's TLS terminator. Stopped and checked when the test ends."""
    started = []

    def make(upstream=None, start=True, **overrides):
        if upstream is None:
            upstream = request.getfixturevalue("tls").url
        elif not isinstance(upstream, str):
            upstream = upstream.url
        overrides.setdefault("ca_file", str(pki.ca_cert))
        ca = overrides.pop("ca_file")
        gw = harness.Gateway(mb_binary, upstream, ca, name="gateway-%s" % request.node.name[:40],
                             **overrides)
        started.append(gw)
        _remember(request, gw)
        if start:
            gw.start()
        return gw

    yield make
    problems = []
    for gw in started:
        if gw.proc is not None:
            rc, in_time = gw.stop()
            if not in_time:
                problems.append("%s: did not exit within 10 s of SIGTERM" % gw.name)
            elif rc != 0:
                problems.append("%s: exit status %s on SIGTERM" % (gw.name, rc))
        secrets = [gw.service_auth.get("password")] + list(getattr(gw, "secrets", ()))
        problems += ["%s: %s" % (gw.name, p) for p in _log_problems(gw.log_text(), secrets)]
    if problems:
        pytest.fail("gateway checks at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def quota_gateway(request, make_gateway, tls_quota):
    """A gateway in front of the Glance whose image_member_quota is 5, with
    [members] concurrency = 4."""
    return make_gateway(upstream=tls_quota, concurrency=4)


@pytest.fixture
def bad_upstream(pki):
    """Factory: bad_upstream(mode, tls=True, delay=None) starts
    badupstream.py (TLS with the test CA's 127.0.0.1 certificate)."""
    started = []

    def make(mode, tls=True, **kw):
        b = harness.BadUpstream(mode, cert=pki.server_cert if tls else None,
                                key=pki.server_key if tls else None, **kw)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


# --------------------------------------------------------------------------
# helpers as fixtures

@pytest.fixture
def owner():
    return harness.unique("owner")


@pytest.fixture
def shared_image(glance, owner):
    return glance.create_image(owner, "shared")


# --------------------------------------------------------------------------
# a real Keystone and a Glance that trusts it (keystone_stack.py); started
# only when a test asks for them

import keystone_stack  # noqa: E402

SHORT_TOKEN_EXPIRATION = 8  # seconds, for keystone_short_stack


def _uses(request, *fixtures):
    return any(f in getattr(item, "fixturenames", ()) for item in request.session.items
               for f in fixtures)


@pytest.fixture(scope="session")
def keystone(request, pki):
    """Keystone (tokens valid 1 h): .url/.auth_url plain http, .tls_url/
    .tls_auth_url through nginx with the test CA; .make_account(),
    .token(), .revoke_token(), .disable_user()... (keystone_stack.Keystone)."""
    if _uses(request, "keystone_glance"):  # its db_sync runs while Keystone starts
        _early["keystone_glance"] = keystone_stack.KeystoneGlance(
            None, pki=pki, name="glance-ks").db_sync_in_background()
    k = keystone_stack.Keystone(pki=pki, name="keystone")
    try:
        k.start()
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="session")
def keystone_glance(keystone, pki):
    """Glance in the keystone paste flavor, validating tokens with keystone
    (no token cache); .url plain http, .tls_url through nginx."""
    g = _early.pop("keystone_glance", None) or keystone_stack.KeystoneGlance(
        None, pki=pki, name="glance-ks")
    g.keystone = keystone
    try:
        g.start()
        yield g
    finally:
        g.stop()


@pytest.fixture(scope="session")
def keystone_short_stack(pki):
    """(keystone, glance): a second Keystone whose tokens live
    SHORT_TOKEN_EXPIRATION seconds, and a Glance that trusts it."""
    k, g = keystone_stack.start_stack(pki, token_expiration=SHORT_TOKEN_EXPIRATION,
                                      name="keystone-short")
    try:
        yield k, g
    finally:
        g.stop()
        k.stop()


@pytest.fixture(scope="session")
def gateway_service_account(keystone):
    """The gateway's service user ("memberbridge-<hex>", admin on the service
    project): .username, .password, .token(), .service_auth() -> the
    [service_auth] settings (Keystone over TLS with the test CA). Shared by
    the session: a test that disables it or changes its password makes its
    own with keystone_stack.gateway_service_user(keystone, name=unique(...))."""
    return keystone_stack.gateway_service_user(
        keystone, name=harness.unique(keystone_stack.GATEWAY_SERVICE_USER))
