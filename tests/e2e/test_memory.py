"""The body of a membership call is parsed as it arrives and never held whole
(libevhtp keeps whatever an on_read hook leaves in its buffer: the gateway
drains it). A regression test on peak memory with a wide margin, not a
benchmark: a 48 MiB body must not raise the gateway's peak RSS by more than
16 MiB."""

import socket

import pytest

from harness import glance_headers, unique


def _kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


def _sanitized(binary):
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def test_big_body_is_streamed_not_buffered(make_gateway, glance, owner, shared_image, mb_binary):
    if _sanitized(mb_binary):
        pytest.skip("ASan's allocator keeps freed memory in quarantine: RSS says nothing there")
    gw = make_gateway(max_body_bytes=64 << 20)
    pid = gw.proc.pid
    before = _kib(pid, "VmHWM")
    # Unknown keys are ignored (SPEC 1): a long array of small numbers, so
    # the JSON parser itself never needs a big token either.
    filler = b"[" + b"1," * (24 << 20) + b"1]"
    body = b'{"filler": ' + filler + b'}'
    m = unique("m")
    head = ["PUT /v1/images/%s/members/%s HTTP/1.1" % (shared_image, m), "Host: 127.0.0.1",
            "Content-Type: application/json", "Content-Length: %d" % len(body)]
    head += ["%s: %s" % kv for kv in glance_headers(owner).items()]
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=60)
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    for i in range(0, len(body), 1 << 20):
        s.sendall(body[i:i + (1 << 20)])
    reply = s.recv(4096)
    s.close()
    assert reply.startswith(b"HTTP/1.1 204"), reply[:300]
    after = _kib(pid, "VmHWM")
    assert after - before < 16 << 10, "peak RSS grew by %d KiB for a %d KiB body" % (
        after - before, len(body) >> 10)
    assert m in glance.v2_members(shared_image, owner)
