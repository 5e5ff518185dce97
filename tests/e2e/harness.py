"""End-to-end harness for memberbridge: a throwaway PKI, a real Glance
(Debian's python3-glance, trusted-identity-header paste flavor), nginx as the
TLS terminator in front of it, a misbehaving upstream, and the gateway itself.

Used by the pytest suite (conftest.py) and by the demo (demo.py); it does not
import pytest. Everything binds 127.0.0.1 on ports chosen at run time, writes
below one work directory, and every process it starts is registered so that
stop_all() (also run at exit) kills whatever is left.
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import badupstream  # noqa: E402  (the scripted upstream; its parsing helpers)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = "/usr/bin/python3"  # Debian's, which sees python3-glance
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
LOCAL = "127.0.0.1"

# A recognisable token: it must never show up in any gateway log.
SECRET_TOKEN = "tok-SECRET-1234"


class HarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# small utilities

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def unique(prefix):
    """A fresh id (project, image name...) so tests never share state."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def tail(path, lines=60):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no %s)" % path
    return "\n".join(text.splitlines()[-lines:])


def read_text(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


_SAN_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_errors(log_text):
    """The lines of a log that report AddressSanitizer, LeakSanitizer or
    UndefinedBehaviorSanitizer errors."""
    return [line for line in log_text.splitlines()
            if any(p in line for p in _SAN_PATTERNS)]


# --------------------------------------------------------------------------
# processes

_PROCS = []
_PROCS_LOCK = threading.Lock()


class Proc:
    """A child process in its own session, output to a log file."""

    def __init__(self, name, argv, log_path, env=None, cwd=None, stdout_pipe=False):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.returncode = None
        with _PROCS_LOCK:
            _PROCS.append(self)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        """Signal the process, wait up to timeout, SIGKILL the whole group if
        it is still there. Returns (returncode, exited_in_time)."""
        in_time = True
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                in_time = False
        self._kill_group()
        self.returncode = self.popen.wait()
        if self.popen.stdout:
            self.popen.stdout.close()
        self._log.close()
        with _PROCS_LOCK:
            if self in _PROCS:
                _PROCS.remove(self)
        return self.returncode, in_time

    def _kill_group(self):
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_text(self):
        return read_text(self.log_path)

    def describe(self):
        return "%s (pid %s, log %s):\n%s" % (self.name, self.pid, self.log_path, tail(self.log_path))


def stop_all():
    """Kill everything the harness started and did not stop yet."""
    with _PROCS_LOCK:
        procs = list(_PROCS)
    for p in procs:
        try:
            p.stop(timeout=3.0)
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass


atexit.register(stop_all)


def wait_http_ok(url, proc, timeout, verify=True, what=None):
    """Poll GET url until 200; fail early, with the log tail, if proc dies."""
    what = what or url

    def ready():
        if not proc.alive():
            raise HarnessError("%s exited with %s before it was ready\n%s"
                               % (proc.name, proc.popen.returncode, proc.describe()))
        try:
            r = requests.get(url, timeout=2, verify=verify)
            return r.status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, timeout, interval=0.1, what=what)
    except HarnessError as e:
        raise HarnessError("%s\n%s" % (e, proc.describe())) from None


def make_workdir(name):
    """A directory for one component below MB_E2E_WORKDIR (kept) or a fresh
    temp dir."""
    base = os.environ.get("MB_E2E_WORKDIR")
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=name + "-", dir=base))
    return Path(tempfile.mkdtemp(prefix="mb-e2e-%s-" % name))


# --------------------------------------------------------------------------
# PKI, made with the openssl CLI

class PKI:
    """A test CA, a server certificate for 127.0.0.1/localhost signed by it,
    one for a wrong host name (wrong.example only), and a second, unrelated
    CA. All ECDSA P-256.

    For the TLS faults (made on first use, see tls_faults()): certificates
    for 127.0.0.1 that are expired, self-signed, or signed by the unrelated
    CA, and a client certificate (clientAuth) signed by the test CA."""

    def __init__(self, workdir=None):
        self.dir = Path(workdir) if workdir else make_workdir("pki")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_cert, self.ca_key = self._ca("ca", "memberbridge test CA")
        self.other_ca_cert, self.other_ca_key = self._ca("other-ca", "unrelated test CA")
        self.server_cert, self.server_key = self._leaf(
            "server", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
        self.wrong_cert, self.wrong_key = self._leaf(
            "wrong", "wrong.example", "DNS:wrong.example")
        self._faulty = None

    LOCAL_SAN = "IP:127.0.0.1,DNS:localhost"

    def tls_faults(self):
        """{name: (cert, key)} of server certificates the gateway must refuse
        for https://127.0.0.1: "expired", "self_signed", "wrong_host",
        "unknown_ca"; made once."""
        if self._faulty is None:
            self._faulty = {
                "expired": self._expired_leaf("expired", "127.0.0.1"),
                "self_signed": self._self_signed("self-signed", "127.0.0.1", self.LOCAL_SAN),
                "wrong_host": (self.wrong_cert, self.wrong_key),
                "unknown_ca": self._leaf("unknown-ca", "127.0.0.1", self.LOCAL_SAN,
                                         ca=(self.other_ca_cert, self.other_ca_key)),
            }
        return self._faulty

    @property
    def client_cert(self):
        """(cert, key): a client certificate signed by the test CA."""
        if not (self.dir / "client.pem").exists():
            self._leaf("client", "memberbridge-gateway", "DNS:memberbridge-gateway",
                       usage="clientAuth")
        return self.dir / "client.pem", self.dir / "client.key"

    def _run(self, *args):
        r = subprocess.run([OPENSSL, *args], cwd=self.dir, capture_output=True, text=True)
        if r.returncode != 0:
            raise HarnessError("openssl %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))

    def _ca(self, name, cn):
        cert, key = self.dir / (name + ".pem"), self.dir / (name + ".key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3",
                  "-subj", "/CN=" + cn,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return cert, key

    def _leaf(self, name, cn, san, ca=None, usage="serverAuth"):
        """A certificate signed by ca ((cert, key), default the test CA)."""
        ca_cert, ca_key = ca or (self.ca_cert, self.ca_key)
        cert, key = self.dir / (name + ".pem"), self.dir / (name + ".key")
        csr, ext = self.dir / (name + ".csr"), self.dir / (name + ".ext")
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=%s\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
            "subjectAltName=%s\n" % (usage, san))
        self._run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=" + cn)
        self._run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert),
                  "-CAkey", str(ca_key), "-CAcreateserial", "-days", "3",
                  "-out", str(cert), "-extfile", str(ext))
        return cert, key

    def _self_signed(self, name, cn, san):
        """A leaf (CA:FALSE) that signs itself."""
        cert, key = self.dir / (name + ".pem"), self.dir / (name + ".key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3",
                  "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:FALSE",
                  "-addext", "extendedKeyUsage=serverAuth", "-addext", "subjectAltName=" + san)
        return cert, key

    def _expired_leaf(self, name, cn):
        """A certificate for 127.0.0.1 signed by the test CA that expired
        a day ago (valid from 10 days ago). The openssl CLI of OpenSSL 3.0
        cannot backdate one, so python3-cryptography signs it."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        import datetime
        import ipaddress

        ca_cert = x509.load_pem_x509_certificate(Path(self.ca_cert).read_bytes())
        ca_key = serialization.load_pem_private_key(Path(self.ca_key).read_bytes(), None)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=10))
                .not_valid_after(now - datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(cn)), x509.DNSName("localhost")]),
                    critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = self.dir / (name + ".pem"), self.dir / (name + ".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


# --------------------------------------------------------------------------
# Glance

GLANCE_PASTE = """\
[pipeline:glance-api-trusted]
pipeline = healthcheck versionnegotiation context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:healthcheck]
paste.filter_factory = oslo_middleware:Healthcheck.factory
backends = disable_by_file
disable_by_file_path = {dir}/healthcheck_disable

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory
"""

GLANCE_CONF = """\
[DEFAULT]
bind_host = 127.0.0.1
bind_port = {port}
workers = {workers}
image_member_quota = {quota}
enabled_backends = fs:file
log_file = {dir}/glance-api.log
use_stderr = false
debug = false
client_socket_timeout = 900
# Small pages, so that listing images (GET /v1/shared-images) must follow
# Glance's "next" links even with a few dozen images.
api_limit_max = 20
limit_param_default = 10

[database]
connection = sqlite:///{dir}/glance.sqlite

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {dir}/images

[os_glance_staging_store]
filesystem_store_datadir = {dir}/staging

[os_glance_tasks_store]
filesystem_store_datadir = {dir}/tasks

[oslo_concurrency]
lock_path = {dir}/locks

[oslo_policy]
policy_file = {dir}/policy.yaml

[paste_deploy]
flavor = trusted
config_file = {dir}/glance-api-paste.ini
"""

_WRAPPER = """\
import sys
from glance.cmd.{module} import main
sys.exit(main())
"""


def glance_headers(project, admin=False, token=SECRET_TOKEN, **extra):
    """Identity headers that Glance's trusted paste flavor believes."""
    h = {
        "X-Identity-Status": "Confirmed",
        "X-Project-Id": project,
        "X-Tenant-Id": project,
        "X-User-Id": "u-" + project,
        "X-Roles": "admin" if admin else "member,reader",
        "Accept": "application/json",
    }
    if token:
        h["X-Auth-Token"] = token
    h.update(extra)
    return h


class Glance:
    """A real Glance API on 127.0.0.1 (plain http), one process (workers=0)
    unless workers is given."""

    def __init__(self, quota=128, workdir=None, name="glance", workers=0):
        self.quota = quota
        self.workers = workers
        self.name = name
        self.dir = Path(workdir) if workdir else make_workdir(name)
        self.port = None
        self.proc = None
        self.session = requests.Session()
        self._write_files()

    # files -----------------------------------------------------------------
    def _write_files(self):
        d = self.dir
        for sub in ("images", "staging", "tasks", "locks", "confdir"):
            (d / sub).mkdir(exist_ok=True)
        (d / "glance-api-paste.ini").write_text(GLANCE_PASTE.format(dir=d))
        (d / "policy.yaml").write_text("# defaults only\n")
        for module in ("api", "manage"):
            (d / ("glance-%s" % module)).write_text(_WRAPPER.format(module=module))

    def _write_conf(self):
        (self.dir / "glance-api.conf").write_text(
            GLANCE_CONF.format(dir=self.dir, port=self.port, quota=self.quota,
                               workers=self.workers))

    def _argv(self, module, *rest):
        return [PYTHON, self.dir / ("glance-" + module),
                "--config-dir", self.dir / "confdir",
                "--config-file", self.dir / "glance-api.conf", *rest]

    @property
    def log_path(self):
        return self.dir / "glance-api.log"

    @property
    def url(self):
        return "http://%s:%d" % (LOCAL, self.port)

    # lifecycle -------------------------------------------------------------
    def start(self, wait=True, timeout=60):
        self.port = free_port()
        self._write_conf()
        if not (self.dir / "glance.sqlite").exists():
            r = subprocess.run(self._argv("manage", "db_sync"), capture_output=True,
                               text=True, timeout=120, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise HarnessError("glance db_sync failed (%s):\n%s\n%s"
                                   % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        self.proc = Proc(self.name, self._argv("api"), self.dir / "glance-api.stderr")
        if wait:
            self.wait_ready(timeout)
        return self

    def start_in_background(self, timeout=60):
        """start() in a thread, so that several Glances start at once;
        join() waits for it and raises what start() raised."""
        self._bg_error = None

        def run():
            try:
                self.start(timeout=timeout)
            except Exception as e:  # noqa: BLE001 - re-raised by join()
                self._bg_error = e

        self._bg = threading.Thread(target=run, name="start-" + self.name, daemon=True)
        self._bg.start()
        return self

    def join(self):
        self._bg.join()
        if self._bg_error:
            raise self._bg_error
        return self

    def wait_ready(self, timeout=60):
        try:
            wait_http_ok(self.url + "/healthcheck", self.proc, timeout, what="glance /healthcheck")
        except HarnessError as e:
            raise HarnessError("%s\nglance-api.log:\n%s" % (e, tail(self.log_path))) from None

    def stop(self, timeout=10):
        if self.proc:
            self.proc.stop(timeout)
            self.proc = None

    def restart(self, quota=None):
        """Restart, optionally with another image_member_quota (same db)."""
        self.stop()
        if quota is not None:
            self.quota = quota
        return self.start()

    def log_text(self):
        return read_text(self.log_path)

    # direct v2 calls (plain http, straight to Glance) ------------------------
    def request(self, method, path, project, admin=False, **kw):
        headers = glance_headers(project, admin=admin)
        headers.update(kw.pop("headers", {}))
        return self.session.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def create_image(self, owner, visibility="shared", name=None):
        """Create an image owned by project owner; returns its id. Public
        images need the admin role."""
        body = {"name": name or unique("img"), "visibility": visibility,
                "disk_format": "raw", "container_format": "bare"}
        r = self.request("POST", "/v2/images", owner, admin=(visibility == "public"), json=body)
        if r.status_code != 201:
            raise HarnessError("create image: %s %s" % (r.status_code, r.text[:500]))
        return r.json()["id"]

    def v2_members(self, image, owner):
        """The set of member ids of image, as its owner sees them in v2."""
        r = self.request("GET", "/v2/images/%s/members" % image, owner)
        if r.status_code == 403:  # not a shared image: no members
            return set()
        if r.status_code != 200:
            raise HarnessError("list members: %s %s" % (r.status_code, r.text[:500]))
        return {m["member_id"] for m in r.json()["members"]}

    def add_v2_member(self, image, owner, member):
        r = self.request("POST", "/v2/images/%s/members" % image, owner, json={"member": member})
        if r.status_code != 200:
            raise HarnessError("add member: %s %s" % (r.status_code, r.text[:500]))

    def image(self, image, project):
        return self.request("GET", "/v2/images/%s" % image, project)


# --------------------------------------------------------------------------
# nginx, the TLS terminator in front of Glance

class TlsTerminator:
    """nginx in the foreground: HTTPS on 127.0.0.1:port with the CA-signed
    certificate, and on wrong_port with the wrong-host certificate, both
    proxying to an http backend over keep-alive HTTP/1.1."""

    def __init__(self, pki, backend_port, workdir=None, name="nginx",
                 health_path="/healthcheck", forwarded_proto=False):
        """health_path: the backend path that answers 200 once it is ready
        (Keystone: "/v3"). forwarded_proto: also send X-Forwarded-Proto:
        https (for a backend that builds its own links, such as Keystone)."""
        self.pki = pki
        self.backend_port = backend_port
        self.name = name
        self.health_path = health_path
        self.forwarded_proto = forwarded_proto
        self.dir = Path(workdir) if workdir else make_workdir(name)
        self.port = None
        self.wrong_port = None
        self.proc = None

    @property
    def url(self):
        return "https://%s:%d" % (LOCAL, self.port)

    @property
    def wrong_url(self):
        return "https://%s:%d" % (LOCAL, self.wrong_port)

    # Glance is also served below this path prefix, as devstack serves it
    # (the "location /image/" in _conf).
    PREFIX = "/image"

    @property
    def prefix_url(self):
        """https://127.0.0.1:port/image: Glance behind a path prefix."""
        return self.url + self.PREFIX

    @property
    def access_log(self):
        return self.dir / "access.log"

    def _conf(self):
        d = self.dir
        user = ""
        if os.geteuid() == 0:  # workers would otherwise run as nobody
            import grp
            import pwd
            user = "user %s %s;" % (pwd.getpwuid(os.getuid()).pw_name,
                                     grp.getgrgid(os.getgid()).gr_name)
        temp_paths = ["client_body_temp_path %s/tmp/body;" % d,
                      "proxy_temp_path %s/tmp/proxy;" % d]
        built = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
        for mod in ("fastcgi", "uwsgi", "scgi"):
            if "--without-http_%s_module" % mod not in built:
                temp_paths.append("%s_temp_path %s/tmp/%s;" % (mod, d, mod))
        server = """
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://glance;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            {forwarded}
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
        # Glance under a path prefix, as devstack serves it (https://host/image):
        # nginx strips "/image" (proxy_pass with a URI), Glance sees /v2/...
        # Keep in step with PREFIX.
        location /image/ {{
            proxy_pass http://glance/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            {forwarded}
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
    }}"""
        forwarded = "proxy_set_header X-Forwarded-Proto https;" if self.forwarded_proto else ""
        servers = server.format(port=self.port, cert=self.pki.server_cert, key=self.pki.server_key,
                                forwarded=forwarded)
        servers += server.format(port=self.wrong_port, cert=self.pki.wrong_cert,
                                 key=self.pki.wrong_key, forwarded=forwarded)
        return """\
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    {temp_paths}
    map $http_x_auth_token $mb_has_token {{ "" no; default yes; }}
    log_format mb '$remote_addr "$request" $status reqid=$http_x_openstack_request_id '
                  'upstream_reqid=$upstream_http_x_openstack_request_id token=$mb_has_token '
                  'project=$http_x_project_id conn=$connection/$connection_requests';
    access_log {d}/access.log mb;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
    underscores_in_headers on;
    upstream glance {{
        server 127.0.0.1:{backend};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
{servers}
}}
""".format(user=user, d=d, temp_paths="\n    ".join(temp_paths), backend=self.backend_port,
           servers=servers)

    def start(self, timeout=20):
        (self.dir / "tmp").mkdir(exist_ok=True)
        self.port, self.wrong_port = free_port(), free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(self._conf())
        argv = [NGINX, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                "-c", str(conf), "-g", "daemon off;"]
        t = subprocess.run(argv[:-2] + ["-t"], capture_output=True, text=True)
        if t.returncode != 0:
            raise HarnessError("nginx -t failed:\n%s%s" % (t.stdout, t.stderr))
        self.proc = Proc(self.name, argv, self.dir / "nginx.stderr")
        # Ready when the TLS port answers the backend's health check.
        try:
            wait_http_ok(self.url + self.health_path, self.proc, timeout,
                         verify=str(self.pki.ca_cert), what="nginx -> " + self.health_path)
        except HarnessError as e:
            raise HarnessError("%s\nerror.log:\n%s" % (e, tail(self.dir / "error.log"))) from None
        return self

    def stop(self, timeout=10):
        if self.proc:
            self.proc.stop(timeout, sig=signal.SIGQUIT)  # graceful; SIGTERM is fast shutdown
            self.proc = None

    def access_log_text(self):
        return read_text(self.access_log)


# --------------------------------------------------------------------------
# the misbehaving upstream (badupstream.py, a separate process)

class BadUpstream:
    """tests/e2e/badupstream.py in the given mode; optional TLS."""

    def __init__(self, mode, cert=None, key=None, workdir=None, delay=None, rules=None,
                 upstream=None, upstream_ca=None):
        """rules: for mode "rules" or "relay", the list of rules (see
        badupstream.py); set_rules() changes them while it runs, and
        set_faults() also refuses connections or changes the certificate.
        upstream, upstream_ca: for mode "relay", the real upstream's URL
        (an object with .url will do) and the CA to verify it with."""
        self.mode = mode
        self.dir = Path(workdir) if workdir else make_workdir("bad-" + mode)
        self.events = self.dir / "events.log"
        self.rules_path = self.dir / "rules.json"
        self.generation = 0
        argv = [PYTHON, "-u", HERE / "badupstream.py", "--mode", mode,
                "--events", self.events]
        if mode in ("rules", "relay"):
            self.set_rules(rules or [])
            argv += ["--rules", self.rules_path]
        if upstream is not None:
            argv += ["--upstream", upstream if isinstance(upstream, str) else upstream.url]
            if upstream_ca:
                argv += ["--upstream-ca", upstream_ca]
        if cert:
            argv += ["--cert", cert, "--key", key]
        if delay is not None:
            argv += ["--delay", str(delay)]
        self.tls = bool(cert)
        self.proc = Proc("badupstream-" + mode, argv, self.dir / "badupstream.log",
                         stdout_pipe=True)
        line = self._read_ready_line()
        m = re.match(r"READY (\d+)", line)
        if not m:
            self.proc.stop(2)
            raise HarnessError("badupstream did not start: %r\n%s" % (line, self.proc.describe()))
        self.port = int(m.group(1))

    def _read_ready_line(self, timeout=15):
        result = []
        t = threading.Thread(target=lambda: result.append(self.proc.popen.stdout.readline()),
                             daemon=True)
        t.start()
        t.join(timeout)
        return result[0].decode(errors="replace").strip() if result else ""

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", LOCAL, self.port)

    def set_rules(self, rules):
        tmp = self.rules_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rules))
        os.replace(tmp, self.rules_path)

    def set_faults(self, rules=(), refuse=False, tls=None, timeout=10):
        """Replaces the rules, and with refuse=True closes its port (nothing
        listening), with tls={"cert", "key", "client_ca"?} serves that
        certificate (and requires a client certificate signed by client_ca);
        its open connections are closed when either changes. Returns once
        it has applied them."""
        self.generation += 1
        tmp = self.rules_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"generation": self.generation, "rules": list(rules),
                                   "refuse": refuse, "tls": tls}))
        os.replace(tmp, self.rules_path)
        mark = "state %d" % self.generation
        wait_until(lambda: mark in read_text(self.events).splitlines(), timeout,
                   what="badupstream to apply " + mark)

    def events_size(self):
        """The length of the events so far: an offset for request_log()."""
        return len(read_text(self.events))

    def request_log(self, since=0):
        """The requests received after offset since, in order: dicts with
        conn, method, path, body (text, may be cut), member (what the
        request is about: a POST's "member" or the path's /members/M),
        first (the first request on its connection), and fault / forwarded
        (what was done with it: a fault's name, the real upstream's status)."""
        text = read_text(self.events)
        out, seen, latest = [], set(), {}
        offset = 0
        for line in text.splitlines(keepends=True):
            start, offset = offset, offset + len(line)
            parts = line.rstrip("\n").split(" ", 3)
            if parts[0] == "request" and len(parts) >= 4:
                conn = parts[1]
                rec = {"conn": conn, "method": parts[2], "path": parts[3], "body": "",
                       "first": conn not in seen, "fault": None, "forwarded": None}
                seen.add(conn)
                latest[conn] = rec
                if start >= since:
                    out.append(rec)
            elif parts[0] in ("body", "fault", "forwarded") and parts[1] in latest:
                rec = latest[parts[1]]
                rest = line.rstrip("\n").split(" ", 2)[2]
                if parts[0] == "body":
                    rec["body"] = rest
                elif parts[0] == "fault":
                    rec["fault"] = rest
                else:
                    rec["forwarded"] = int(rest.rsplit(" ", 1)[1])
        for rec in out:
            rec["member"] = badupstream.request_member(rec["method"], rec["path"], rec["body"])
        return out

    def connections(self, since=0):
        """How many connections it accepted so far (after offset since)."""
        text = read_text(self.events)[since:]
        return sum(1 for line in text.splitlines() if line.startswith("accept"))

    def requests_seen(self):
        return [line for line in read_text(self.events).splitlines() if line.startswith("request")]

    def max_in_flight(self):
        """slow mode: the most requests it was handling at the same time (0
        before the first)."""
        return max((int(line.split()[2]) for line in read_text(self.events).splitlines()
                    if line.startswith("inflight ")), default=0)

    def request_headers(self):
        """[(name, value)] of the last request it received."""
        lines = read_text(self.events).splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("request ")]
        if not starts:
            return []
        conn = lines[starts[-1]].split()[1]
        out = []
        for line in lines[starts[-1] + 1:]:
            parts = line.split(" ", 2)
            if parts[0] == "header" and parts[1] == conn:
                name, _, value = parts[2].partition(": ")
                out.append((name, value))
        return out

    def stop(self):
        if self.proc:
            self.proc.stop(5)
            self.proc = None


# --------------------------------------------------------------------------
# the gateway

# key -> section, for make_gateway(**overrides); SPEC section 4.
GATEWAY_KEYS = {
    "listen": "server", "max_body_bytes": "server", "client_timeout": "server",
    "workers": "server", "tls_cert_file": "server", "tls_key_file": "server",
    "url": "upstream", "ca_file": "upstream", "connect_timeout": "upstream",
    "request_timeout": "upstream", "retries": "upstream", "max_connections": "upstream",
    "insecure": "upstream", "client_cert_file": "upstream", "client_key_file": "upstream",
    "concurrency": "members", "max_per_request": "members", "can_share": "members",
    "accept": "members", "share_private_images": "members",
    "level": "log", "access_log": "log",
    "admin_listen": "admin",
}
_SECTIONS = ("server", "upstream", "members", "log", "admin")
_KEY_NAMES = {"admin_listen": "listen"}   # setting -> the key written in its section


class Gateway:
    """memberbridge -c FILE, plain http on 127.0.0.1:<free port>."""

    def __init__(self, binary, upstream_url, ca_file, workdir=None, name="gateway",
                 service_auth=None, conf_mode=0o600, https_ca=None, **overrides):
        """service_auth: the [service_auth] keys (dict), written as given.
        conf_mode: the config file's permissions. https_ca: with
        tls_cert_file/tls_key_file set, the CA clients verify the gateway
        with (url is then https://)."""
        self.binary = str(binary)
        self.https_ca = str(https_ca) if https_ca else None
        self.service_auth = dict(service_auth or {})
        self.conf_mode = conf_mode
        self.name = name
        self.dir = Path(workdir) if workdir else make_workdir(name)
        self.port = free_port()
        self.settings = {
            "listen": "%s:%d" % (LOCAL, self.port),
            "max_body_bytes": 1048576,
            "client_timeout": 30,
            "url": upstream_url,
            "ca_file": str(ca_file) if ca_file else "",
            "connect_timeout": 5,
            "request_timeout": 30,
            "retries": 2,
            "concurrency": 16,
            "max_per_request": 10000,
            "can_share": "ignore",
            "level": "debug",
            "access_log": str(self.dir / "access.log"),
        }
        for k, v in overrides.items():
            if k not in GATEWAY_KEYS:
                raise HarnessError("unknown gateway setting %r" % k)
            self.settings[k] = v
        self.conf_path = self.dir / "memberbridge.conf"
        self.log_path = self.dir / "gateway.log"
        self.proc = None
        self.returncode = None
        self.stopped_in_time = None

    def write_conf(self):
        lines = []
        for section in _SECTIONS:
            keys = [k for k, s in GATEWAY_KEYS.items() if s == section
                    and self.settings.get(k) is not None]
            if not keys:
                continue
            lines.append("[%s]" % section)
            lines += ["%s = %s" % (_KEY_NAMES.get(k, k), self.settings[k]) for k in keys]
            lines.append("")
        if self.service_auth:
            lines.append("[service_auth]")
            lines += ["%s = %s" % kv for kv in self.service_auth.items()]
            lines.append("")
        self.conf_path.write_text("\n".join(lines))
        os.chmod(self.conf_path, self.conf_mode)

    @property
    def url(self):
        scheme = "https" if self.settings.get("tls_cert_file") else "http"
        return "%s://%s:%d" % (scheme, LOCAL, self.port)

    @property
    def verify(self):
        """requests' verify= for this gateway's URL."""
        return self.https_ca if self.https_ca else True

    @property
    def admin_url(self):
        v = self.settings.get("admin_listen")
        return "http://%s" % v if v else None

    def metrics(self):
        """GET /metrics on the admin listener, parsed: {(name, frozenset(labels)): value}."""
        r = requests.get(self.admin_url + "/metrics", timeout=10)
        if r.status_code != 200:
            raise HarnessError("/metrics answered %d: %s" % (r.status_code, r.text[:200]))
        return parse_prometheus(r.text)

    def reload(self, conf_changes=None, timeout=10):
        """Changes settings (a dict; a value None drops the key), rewrites
        the config file, sends SIGHUP, and waits for the log line saying it
        was applied or refused; returns True when applied."""
        before = len([ln for ln in self.stderr_text().splitlines() if "SIGHUP: " in ln])
        for k, v in (conf_changes or {}).items():
            if k not in GATEWAY_KEYS:
                raise HarnessError("unknown gateway setting %r" % k)
            self.settings[k] = v
        self.write_conf()
        os.kill(self.proc.pid, signal.SIGHUP)

        def outcome():
            lines = [ln for ln in self.stderr_text().splitlines() if "SIGHUP: " in ln]
            done = [ln for ln in lines[before:] if "reloaded" in ln or "stays" in ln]
            return done[-1] if done else None
        line = wait_until(outcome, timeout, what="the gateway's SIGHUP outcome")
        return "configuration reloaded" in line

    @property
    def access_log_path(self):
        v = self.settings.get("access_log")
        return Path(v) if v not in (None, "-", "off") else None

    def start(self, timeout=20):
        if not os.access(self.binary, os.X_OK):
            raise HarnessError("gateway binary %s is missing or not executable" % self.binary)
        self.write_conf()
        self.proc = Proc(self.name, [self.binary, "-c", self.conf_path], self.log_path)
        try:
            wait_http_ok(self.url + "/healthcheck", self.proc, timeout, verify=self.verify,
                         what="gateway /healthcheck")
        except HarnessError:
            self.stop()
            raise
        return self

    def alive(self):
        return bool(self.proc and self.proc.alive())

    def stop(self, timeout=10):
        """SIGTERM; returns (returncode, exited within timeout)."""
        if self.proc:
            self.returncode, self.stopped_in_time = self.proc.stop(timeout)
            self.proc = None
        return self.returncode, self.stopped_in_time

    def log_text(self):
        """stderr (the log) plus the access log."""
        text = read_text(self.log_path)
        if self.access_log_path:
            text += read_text(self.access_log_path)
        return text

    def stderr_text(self):
        return read_text(self.log_path)

    def access_log_text(self):
        return read_text(self.access_log_path) if self.access_log_path else ""

    def describe(self):
        return "gateway log %s:\n%s" % (self.log_path, tail(self.log_path, 80))


class RepeatingBody:
    """size bytes of a repeated block, read like a file (so that requests
    sends a Content-Length, not chunks): many GiB without holding them."""

    def __init__(self, size, block):
        self.size, self.block, self.left = size, block, size

    def __len__(self):
        return self.size

    def read(self, n=-1):
        off = (self.size - self.left) % len(self.block)
        n = len(self.block) if n is None or n < 0 else n
        n = min(n, len(self.block) - off, self.left)
        self.left -= n
        return self.block[off:off + n]


def parse_prometheus(text):
    """The Prometheus text format, strictly: every sample line is
    name{labels} value or name value, each family has # HELP and # TYPE
    first. Returns {(name, frozenset(label pairs)): float}."""
    out, typed = {}, set()
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            typed.add(ln.split()[2])
            continue
        if ln.startswith("#") or not ln:
            continue
        m = sample.match(ln)
        if not m:
            raise HarnessError("not a Prometheus sample line: %r" % ln)
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in typed and family not in typed:
            raise HarnessError("sample %s before its # TYPE line" % name)
        pairs = frozenset(label.findall(labels)) if labels else frozenset()
        out[(name, pairs)] = float(value)
    return out


# --------------------------------------------------------------------------
# one whole stack, for the demo

class Stack:
    """PKI + Glance + nginx + gateway, started together, stopped together."""

    def __init__(self, binary, quota=128, **gateway_overrides):
        self.pki = PKI()
        self.glance = Glance(quota=quota).start()
        self.tls = TlsTerminator(self.pki, self.glance.port).start()
        self.gateway = Gateway(binary, self.tls.url, self.pki.ca_cert, **gateway_overrides).start()

    def stop(self):
        for part in (self.gateway, self.tls, self.glance):
            try:
                part.stop()
            except Exception as e:  # noqa: BLE001
                print("stopping %s: %s" % (part, e), file=sys.stderr)


# --------------------------------------------------------------------------
# talking to the gateway

def v1(base_url, method, path, project, body=None, data=None, headers=None, timeout=60,
       session=None):
    """One call to the gateway as project (identity headers + the secret
    token). body is JSON-encoded; data is sent as is."""
    h = glance_headers(project)
    if body is not None:
        data = json.dumps(body)
    if data is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    return (session or requests).request(method, base_url + path, data=data, headers=h,
                                         timeout=timeout)


def raw_request(method, path, project, body=b"", extra=None, host=True, version="HTTP/1.1"):
    """The bytes of one request with Content-Length, for raw-socket tests."""
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s %s" % (method, path, version)]
    if host:
        lines.append("Host: 127.0.0.1")
    for k, v in glance_headers(project).items():
        lines.append("%s: %s" % (k, v))
    if body or method in ("PUT", "POST"):
        lines.append("Content-Type: application/json")
        lines.append("Content-Length: %d" % len(body))
    lines += list(extra or [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        """The first value of a header, or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s %r %r>" % (self.status, self.reason, self.headers, self.body[:300])


class RawConn:
    """A plain TCP connection to the gateway with a shared read buffer, so
    that pipelined replies are read one after the other."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection((LOCAL, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the gateway")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="PUT"):
        status_line = self._line()
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HarnessError("not an HTTP status line: %r" % status_line)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = RawResponse(status, reason, headers, b"")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if te == "chunked":
            body = b""
            while True:
                size = int(self._line().split(";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._exact(2)
            resp.body = body
        elif cl is not None:
            resp.body = self._exact(int(cl))
        else:  # until close
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_peer(self, timeout=5):
        """True when the peer closes (EOF or reset) within timeout, with
        nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if chunk:
            self.buf += chunk
            return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
