"""The upstream fault matrix (SPEC section 2): every fault badupstream.py can
produce, against each membership operation that fans out.

One relay (badupstream.py --mode relay, TLS with the test certificate) sits
between the gateway and the session's Glance (behind nginx); the gateway
([upstream] request_timeout 2 s, retries 2) is shared by the whole module,
and a second one with a longer request_timeout takes the 64 MiB answers. For each case the
relay is told which calls to hit and how, either BEFORE forwarding (the call
never reaches Glance) or AFTER (Glance did it, then the gateway sees the
fault); connection refusal and the TLS faults hit every call. Each case then
checks:

- the v1 status is the one SPEC section 2 prescribes for the first failure;
- the JSON results name exactly the member operations done and not done, and
  Glance (asked directly over v2) agrees: what is reported done is done, what
  never reached Glance is not, and what Glance did behind a failure is
  there (reported not done: the gateway cannot know);
- the faulted calls were retried (retries + 1 attempts) when the fault is
  retryable (refused, closed or reset before any response byte) and sent
  once otherwise, counted from the relay's events (refusals: from the
  gateway's log, nothing is accepted);
- with the fault cleared, the same v1 request converges to 204 and Glance's
  member list is the one asked for;
- the gateway still answers /healthcheck and its log has no sanitizer report
  (and no token); at the end of the module it exits 0 on SIGTERM.
"""

import re
from dataclasses import dataclass

import pytest
import requests

import harness
from harness import SECRET_TOKEN, sanitizer_errors, unique, v1

RETRIES = 2            # [upstream] retries: a retryable fault makes 3 attempts
REQUEST_TIMEOUT = 2    # [upstream] request_timeout, seconds: a hang costs this much
HUGE_TIMEOUT = 20      # request_timeout for the gateway that receives 64 MiB answers
SLOW_OK = 0.001        # seconds per byte: a Glance answer still arrives in time
SLOW_LATE = 0.05       # seconds per byte: ~500 bytes take far longer than 2 s
MEMBER_LIST = r"/v2/images/[^/]+/members$"


# --------------------------------------------------------------------------
# the faults

def hit(fault=None, when="before", **extra):
    """Rules for the relay: the given fault on every call about the members
    it is given (a POST naming one, a DELETE of one)."""
    def rules(members, methods):
        return [dict(extra, members=list(members), method=m, when=when,
                     **({"fault": fault} if fault else {}))
                for m in methods]
    return rules


def on_member_list(fault, **extra):
    """Rules: the fault on the replace's GET of the member list only."""
    def rules(members, methods):
        return [dict(extra, method="GET", path=MEMBER_LIST, fault=fault)]
    return rules



@dataclass
class Fault:
    name: str
    status: int                 # the v1 reply's status while the fault is on
    rules: object = None        # hit(...) / on_member_list(...)
    after: bool = False         # the relay forwards a faulted call first (Glance does it)
    reached: bool = None        # Glance did the faulted operations (default: after)
    done: bool = False          # the gateway counts a faulted call done
    attempts: int = 1           # attempts per faulted operation (retries included)
    calls: int = None           # instead: exactly this many requests per faulted operation
    refuse: bool = False        # nothing listening on the relay's port
    tls: str = None             # the relay's certificate: a PKI.tls_faults() name, or "client_cert"
    result_status: int = None   # the "status" of a faulted result (default: status)
    replace_methods: tuple = ("POST", "DELETE")  # what it hits inside a replace
    on_list: bool = False       # it hits the replace's member list instead
    log: str = None             # a regex the gateway's log must match meanwhile
    write_race: bool = False    # a TLS refusal the gateway may meet as a reset (below)
    timeout: int = REQUEST_TIMEOUT  # the gateway's request_timeout for this fault

    def __post_init__(self):
        if self.reached is None:
            self.reached = self.after

    @property
    def is_global(self):
        """Hits every call (refused, TLS): nothing can be done."""
        return self.refuse or self.tls is not None

    @property
    def ops(self):
        return ("replace",) if self.on_list else ("single", "bulk", "replace")


ALL = RETRIES + 1
FAULTS = [
    # connection level: retryable, and retried
    Fault("refused", 502, refuse=True, attempts=ALL,
          log=r"unreachable while calling .* \(%d attempts\)" % ALL),
    Fault("reset_before_any_byte", 502, hit("reset"), attempts=ALL),
    Fault("closed_before_any_byte", 502, hit("close"), attempts=ALL),
    Fault("reset_before_any_byte_after", 502, hit("reset", "after"), after=True, attempts=ALL),
    Fault("reset_once_then_ok", 204, hit("reset", times=1), reached=True, done=True, calls=2),
    # no answer in time: 504, never retried
    Fault("hang", 504, hit("hang"), log=r"timed out"),
    Fault("hang_after", 504, hit("hang", "after"), after=True),
    Fault("slow_bytes_in_time_after", 204, hit("slow", "after", byte_delay=SLOW_OK),
          after=True, done=True),
    Fault("slow_bytes_past_timeout_after", 504, hit("slow", "after", byte_delay=SLOW_LATE),
          after=True),
    # a broken answer: 502, never retried
    Fault("reset_in_headers_after", 502, hit("reset_after", "after", bytes=20), after=True),
    Fault("reset_in_body", 502, hit("reset_after", body_bytes=10)),
    Fault("truncated_body_after", 502, hit("truncate", "after"), after=True),
    Fault("garbage", 502, hit("garbage")),
    # (64 MiB must arrive before request_timeout, or it would be a 504)
    Fault("huge_body_after", 502, hit("huge", "after"), after=True,
          log=r"larger than %d bytes" % (64 << 20), timeout=HUGE_TIMEOUT),
    Fault("status_500", 502, hit(status=500, body={"code": 500, "message": "fault"}),
          result_status=500),
    Fault("status_503_after", 502, hit(when="after", status=503, body={"message": "fault"}),
          after=True, result_status=503),
    # a 200 whose body is not JSON: the status says the POST was done (the
    # gateway has no use for its body); the member list a replace must read
    # is another matter
    Fault("invalid_json_200_after", 204, hit("invalid_json", "after"), after=True, done=True,
          replace_methods=("POST",)),
    Fault("invalid_json_member_list", 502, on_member_list("invalid_json"), on_list=True),
    Fault("huge_member_list", 502, on_member_list("huge"), on_list=True,
          log=r"larger than %d bytes" % (64 << 20), timeout=HUGE_TIMEOUT),
    # TLS: never retried, nothing reaches Glance
    Fault("tls_expired", 502, tls="expired", log=r"certificate has expired"),
    Fault("tls_self_signed", 502, tls="self_signed", log=r"self.signed certificate"),
    Fault("tls_wrong_host", 502, tls="wrong_host", log=r"does not match target host"),
    Fault("tls_unknown_ca", 502, tls="unknown_ca", log=r"unable to get local issuer"),
    # TLS 1.3: the client has finished its handshake when the server checks
    # its certificate, so the gateway writes its request while the server's
    # alert and close are on their way; when the close wins, the write fails
    # with a reset, which counts as "closed before any response byte" and is
    # retried (logged as unreachable). Still 502, nothing reaches Glance.
    Fault("tls_client_cert_required", 502, tls="client_cert", log=r"certificate required",
          write_race=True),
]


# --------------------------------------------------------------------------
# the operations

@dataclass
class Op:
    """One v1 call and what it means: the member operations in list order
    [(member, action)], the ones selective faults hit, the members before
    and the members asked for."""
    name: str
    image: str
    method: str
    path: str
    body: object
    plan: list
    targets: list
    before: set
    after: set

    def send(self, gw, owner):
        return v1(gw.url, self.method, self.path, owner, body=self.body, timeout=60)


def make_op(name, glance, owner, fault):
    image = glance.create_image(owner, "shared")
    if name == "single":
        m = unique("m")
        return Op(name, image, "PUT", "/v1/images/%s/members/%s" % (image, m), None,
                  [(m, "add")], [m], set(), {m})
    if name == "bulk":
        ms = [unique("m%d-" % i) for i in range(6)]
        return Op(name, image, "PUT", "/v1/images/%s/members/%s" % (image, ms[0]),
                  {"members": [{"member_id": m} for m in ms[1:]]},
                  [(m, "add") for m in ms], [ms[2], ms[4]], set(), set(ms))
    keep = [unique("keep"), unique("keep")]
    drop = [unique("drop"), unique("drop")]
    add = [unique("add"), unique("add"), unique("add")]
    for m in keep + drop:
        glance.add_v2_member(image, owner, m)
    if fault.on_list:
        targets = []
    elif fault.replace_methods == ("POST",):
        targets = add[1:]
    else:
        targets = add[1:2] + drop[1:]
    return Op(name, image, "PUT", "/v1/images/%s/members" % image,
              {"memberships": [{"member_id": m} for m in keep + add]},
              [(m, "add") for m in add] + [(m, "delete") for m in drop], targets,
              set(keep + drop), set(keep + add))


CASES = [pytest.param(f, op, id="%s-%s" % (f.name, op)) for f in FAULTS for op in f.ops]


# --------------------------------------------------------------------------
# fixtures: one relay and its gateways for the module

class ModuleGateways:
    """The module's gateways in front of the relay, one per request_timeout:
    started on first use, started again if a test left one dead; each test
    checks only what was logged during it."""

    def __init__(self, binary, relay, pki):
        self.binary, self.relay, self.pki = binary, relay, pki
        self.gateways = {}
        self.generation = 0

    def get(self, timeout):
        gw = self.gateways.get(timeout)
        if gw is None or not gw.alive():
            if gw is not None:
                gw.stop()
            self.generation += 1
            gw = harness.Gateway(self.binary, self.relay.url, self.pki.ca_cert,
                                 name="gateway-faults-%d" % self.generation,
                                 request_timeout=timeout, retries=RETRIES,
                                 connect_timeout=2).start()
            self.gateways[timeout] = gw
        return gw


def log_problems(text):
    problems = ["sanitizer: " + line for line in sanitizer_errors(text)[:20]]
    if SECRET_TOKEN in text:
        problems.append("the X-Auth-Token value appears in the gateway log")
    return problems


@pytest.fixture(scope="module")
def relay(pki, tls):
    r = harness.BadUpstream("relay", cert=pki.server_cert, key=pki.server_key,
                            upstream=tls, upstream_ca=str(pki.ca_cert))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def _module_gateway(mb_binary, relay, pki):
    holder = ModuleGateways(mb_binary, relay, pki)
    yield holder
    problems = []
    for gw in holder.gateways.values():
        rc, in_time = gw.stop()
        problems += ["%s: %s" % (gw.name, p) for p in log_problems(gw.log_text())]
        if not in_time or rc != 0:
            problems.append("%s: exit status %s on SIGTERM (in time: %s)" % (gw.name, rc, in_time))
    if problems:
        pytest.fail("fault-matrix gateways at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def fault_gateway(request, _module_gateway, relay):
    """The module's gateway for this test's fault (its request_timeout), the
    relay cleared; fails the test on a sanitizer report or a token in what
    the gateway logged during it."""
    relay.set_faults()
    fault = request.node.callspec.params.get("fault") if hasattr(request.node, "callspec") else None
    gw = _module_gateway.get(fault.timeout if fault else REQUEST_TIMEOUT)
    request.node.__dict__.setdefault("_mb_gateways", []).append(gw)
    start = len(gw.log_text())
    yield gw
    problems = log_problems(gw.log_text()[start:])
    if not gw.alive():
        problems.append("the gateway died")
    if problems:
        pytest.fail("gateway log during this test:\n" + "\n".join(problems), pytrace=False)


def tls_state(pki, name):
    if name == "client_cert":
        return {"cert": str(pki.server_cert), "key": str(pki.server_key),
                "client_ca": str(pki.ca_cert)}
    cert, key = pki.tls_faults()[name]
    return {"cert": str(cert), "key": str(key)}


def apply_fault(relay, pki, fault, op):
    methods = fault.replace_methods if op.name == "replace" else ("POST",)
    rules = fault.rules(op.targets, methods) if fault.rules else []
    relay.set_faults(rules=rules, refuse=fault.refuse,
                     tls=tls_state(pki, fault.tls) if fault.tls else None)


# --------------------------------------------------------------------------
# the checks

def expected_results(fault, op):
    """{(member, action): done} the reply must name, or None when no member
    operation can start (the replace's member list could not be read)."""
    if op.name == "replace" and (fault.is_global or fault.on_list):
        return None
    hit_all = fault.is_global
    return {(m, a): not (hit_all or m in op.targets) or fault.done for m, a in op.plan}


def expected_glance(fault, op):
    """The member set Glance must hold while the fault is on."""
    if fault.is_global or fault.on_list:
        return set(op.before)
    members = set(op.before)
    for m, action in op.plan:
        applied = m not in op.targets or fault.reached
        if applied and action == "add":
            members.add(m)
        elif applied and action == "delete":
            members.discard(m)
    return members


def check_reply(r, fault, op):
    if fault.status == 204:
        assert r.status_code == 204, r.text
        assert r.content == b""
        return
    assert r.status_code == fault.status, r.text
    body = r.json()
    assert body["error"]["code"] == fault.status, body
    want = expected_results(fault, op)
    if want is None:
        assert "results" not in body, body
        return
    got = {(x["member_id"], x["action"]): x["done"] for x in body["results"]}
    assert len(body["results"]) == len(want), body["results"]
    assert got == want, body["results"]
    for x in body["results"]:
        if not x["done"]:
            assert x["status"] == (fault.result_status or fault.status), x
            assert x.get("message"), x


def check_attempts(fault, op, relay, since, gw, log_since):
    """Retryable faults: retries + 1 attempts per faulted call; the others:
    one call each, and no call for what a TLS fault or a refusal stops."""
    seen = relay.request_log(since)
    if fault.is_global:
        assert seen == [], "requests got through a %s fault: %r" % (fault.name, seen)
        calls = 1 if op.name == "replace" else len(op.plan)   # the replace stops at its list
        if fault.refuse:
            attempts = re.findall(r"\((\d+) attempts?\)", gw.stderr_text()[log_since:])
            assert attempts == [str(fault.attempts)] * calls, attempts
        elif fault.write_race:
            assert calls <= relay.connections(since) <= calls * ALL, relay.connections(since)
        else:
            assert relay.connections(since) == calls, \
                "a TLS failure was retried: %d handshakes for %d calls" % (
                    relay.connections(since), calls)
        return
    if fault.on_list:
        lists = [x for x in seen if x["method"] == "GET"]
        assert len(lists) == 1 and lists[0]["fault"], seen
        assert not [x for x in seen if x["method"] != "GET"], seen
        return
    method = {"add": "POST", "delete": "DELETE"}
    for m, action in op.plan:
        mine = [x for x in seen if x["member"] == m and x["method"] == method[action]]
        if m not in op.targets:
            assert len(mine) == 1 and mine[0]["forwarded"], (m, mine)
            continue
        faulted = [x for x in mine if x["fault"]]
        assert faulted, (m, mine)
        # Each attempt ends on a connection of its own making: an attempt
        # on a pooled connection that dies before any answer byte is sent
        # once more on a new one (h1_client), so attempts = first requests.
        firsts = sum(1 for x in mine if x["first"])
        if fault.calls is not None:
            assert len(mine) == fault.calls, (m, mine)
        elif fault.attempts == 1:
            assert len(mine) == 1, (m, mine)
        else:
            assert firsts == fault.attempts, (m, firsts, mine)
            assert len(mine) <= 2 * fault.attempts, (m, mine)
        for x in faulted:
            # "after": Glance was asked; "before": it never was
            assert bool(x["forwarded"]) == fault.after, (m, x)


@pytest.mark.parametrize("fault,op_name", CASES)
def test_fault_matrix(fault, op_name, fault_gateway, relay, glance, pki, owner):
    gw = fault_gateway
    op = make_op(op_name, glance, owner, fault)
    assert glance.v2_members(op.image, owner) == op.before
    apply_fault(relay, pki, fault, op)
    since, log_since = relay.events_size(), len(gw.stderr_text())

    r = op.send(gw, owner)
    check_reply(r, fault, op)
    assert glance.v2_members(op.image, owner) == expected_glance(fault, op)
    check_attempts(fault, op, relay, since, gw, log_since)
    if fault.log:
        assert re.search(fault.log, gw.stderr_text()[log_since:]), gw.describe()

    relay.set_faults()
    r = op.send(gw, owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(op.image, owner) == op.after
    assert requests.get(gw.url + "/healthcheck", timeout=10).status_code == 200


def test_client_certificate_when_the_upstream_requires_one(fault_gateway, relay, make_gateway,
                                                           glance, pki, owner):
    # The relay asks for a client certificate signed by the test CA: the
    # gateway without [upstream] client_cert_file fails (the matrix row
    # tls_client_cert_required), one configured with it gets through.
    cert, key = pki.client_cert
    mtls = make_gateway(upstream=relay, client_cert_file=str(cert), client_key_file=str(key),
                        request_timeout=REQUEST_TIMEOUT, retries=RETRIES)
    image = glance.create_image(owner, "shared")
    relay.set_faults(tls=tls_state(pki, "client_cert"))
    since = relay.events_size()
    m = unique("m")
    r = v1(fault_gateway.url, "PUT", "/v1/images/%s/members/%s" % (image, m), owner)
    assert r.status_code == 502, r.text
    assert glance.v2_members(image, owner) == set()
    r = v1(mtls.url, "PUT", "/v1/images/%s/members/%s" % (image, m), owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(image, owner) == {m}
    peers = [line for line in harness.read_text(relay.events)[since:].splitlines()
             if line.startswith("peer ")]
    assert peers and all("memberbridge-gateway" in p for p in peers), peers
    relay.set_faults()


def test_single_delete_retried_after_a_lost_answer_is_204(fault_gateway, relay, glance, owner):
    # The DELETE reaches Glance (the member is removed), then its answer is
    # reset before any byte: the gateway sends it again and Glance now says
    # 404. The member was removed and is not a member: 204, not the 404 a
    # never-member gets (found by scripts/soak.py).
    image = glance.create_image(owner, "shared")
    m, never = unique("m"), unique("never")
    glance.add_v2_member(image, owner, m)
    relay.set_faults(rules=[{"members": [m], "method": "DELETE", "when": "after",
                             "fault": "reset", "times": 1}])
    since = relay.events_size()
    r = v1(fault_gateway.url, "DELETE", "/v1/images/%s/members/%s" % (image, m), owner)
    assert r.status_code == 204, r.text
    assert glance.v2_members(image, owner) == set()
    calls = [x for x in relay.request_log(since) if x["method"] == "DELETE"]
    assert len(calls) == 2, calls                 # the first (done, answer lost) and the resend
    assert "counted as removed" in fault_gateway.stderr_text()
    # no fault, no resend: a DELETE of a non-member is still 404
    relay.set_faults()
    r = v1(fault_gateway.url, "DELETE", "/v1/images/%s/members/%s" % (image, never), owner)
    assert r.status_code == 404, r.text
