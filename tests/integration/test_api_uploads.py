"""Streamed uploads past aiohttp's body parser (``whaled.api.uploads``) on a real whaled,
over raw connections: the framing of requests around an upload, an upload refused before
its body was read, odd chunk framing, and a client that leaves half-way."""

from __future__ import annotations

import io
import socket
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.support.whaled_proc import WhaledProcess


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _chunked(body: bytes, size: int = 32768, ext: bytes = b"", trailer: bytes = b"") -> bytes:
    out = [b"%x%s\r\n%s\r\n" % (len(body[i : i + size]), ext, body[i : i + size])
           for i in range(0, len(body), size)]  # fmt: skip
    return b"".join(out) + b"0\r\n" + trailer + b"\r\n"


def _upload_head(path: str) -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: whaled\r\nContent-Type: application/x-tar\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


PING = b"GET /_ping HTTP/1.1\r\nHost: whaled\r\n\r\n"


def _connect(whaled: WhaledProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(whaled.sock)
    return sock


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` responses (status, body) read off the connection (Content-Length or
    chunked bodies)."""
    got: list[tuple[int, bytes]] = []
    buf = b""
    while len(got) < count:
        while b"\r\n\r\n" not in buf:
            more = sock.recv(65536)
            assert more, (got, buf)
            buf += more
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        pairs = (line.partition(b":") for line in lines[1:])
        headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            while len(buf) < n:
                buf += sock.recv(65536)
            got.append((status, buf[:n]))
            buf = buf[n:]
        else:
            body = b""
            while True:
                while b"\r\n" not in buf:
                    buf += sock.recv(65536)
                size_line, _, buf = buf.partition(b"\r\n")
                n = int(size_line, 16)
                while len(buf) < n + 2:
                    buf += sock.recv(65536)
                body += buf[:n]
                buf = buf[n + 2 :]
                if n == 0:
                    break
            got.append((status, body))
    return got


def _container(whaled: WhaledProcess, busybox_image: str) -> Any:
    return whaled.client().containers.create(busybox_image, "true")


def test_an_upload_and_the_requests_around_it_on_one_connection(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    ctr = _container(whaled, busybox_image)
    data = bytes(range(256)) * 4096  # 1 MiB
    body = _chunked(_tar({"big": data, "small": b"hi\n"}), ext=b";x=y", trailer=b"X-T: 1\r\n")
    with _connect(whaled) as sock:
        # pipelined: a ping, the upload (with chunk extensions and a trailer), a ping
        sock.sendall(PING + _upload_head(f"/v1.45/containers/{ctr.id}/archive?path=/tmp")
                     + body + PING)  # fmt: skip
        statuses = [status for status, _ in _responses(sock, 3)]
    assert statuses == [200, 200, 200]
    bits, _ = ctr.get_archive("/tmp/big")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
        member = tf.extractfile("big")
        assert member is not None and member.read() == data


def _build_head(query: str) -> bytes:
    return (
        f"POST /v1.45/build?{query} HTTP/1.1\r\nHost: whaled\r\n"
        "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


def test_a_build_context_read_directly_and_the_requests_around_it(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    # the build's worker reads its context from the socket itself, then gives the
    # connection back: the pipelined ping after the body is answered
    data = bytes(range(256)) * 8192  # 2 MiB, past what the tap reads before the hand-over
    context = _tar({"Dockerfile": f"FROM {busybox_image}\nCOPY big /big\n".encode(), "big": data})
    body = _chunked(context, ext=b";x=y", trailer=b"X-T: 1\r\n")
    with _connect(whaled) as sock:
        sock.sendall(PING + _build_head("t=direct:1") + body + PING)
        (s1, _), (s2, stream), (s3, _) = _responses(sock, 3)
    assert (s1, s2, s3) == (200, 200, 200)
    assert b"Successfully tagged direct:1" in stream, stream[-400:]
    ctr = whaled.client().containers.create("direct:1", "true")
    bits, _ = ctr.get_archive("/big")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
        member = tf.extractfile("big")
        assert member is not None and member.read() == data


def test_bad_framing_in_a_build_context_read_directly(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    context = _tar({"f": bytes(2 << 20)})
    good = _chunked(context[: 48 << 15])[: -len(b"0\r\n\r\n")]  # 48 whole chunks, no end
    with _connect(whaled) as sock:
        sock.sendall(_build_head("t=broken:1") + good)
        time.sleep(0.2)  # the worker reads directly by now
        sock.sendall(b"zz\r\n")
        sock.settimeout(10)
        rest = b""
        while more := sock.recv(65536):
            rest += more  # the build's error in its stream, then the server closes
    assert b"invalid chunked request body" in rest, rest[-400:]
    assert whaled.request("GET", "/_ping")[0] == 200
    assert whaled.client().images.list(name="broken") == []
    assert "Traceback" not in Path(whaled.log_path).read_text()


def test_an_upload_with_a_content_length_is_taken_over_too(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    ctr = _container(whaled, busybox_image)
    tar = _tar({"f": b"abc\n"})
    head = (f"PUT /containers/{ctr.id}/archive?path=/tmp HTTP/1.1\r\nHost: whaled\r\n"
            f"Content-Length: {len(tar)}\r\n\r\n").encode()  # fmt: skip
    with _connect(whaled) as sock:
        sock.sendall(head + tar + PING + head + tar[:100])
        assert [s for s, _ in _responses(sock, 2)] == [200, 200]
        sock.sendall(tar[100:])
        assert [s for s, _ in _responses(sock, 1)] == [200]
    bits, _ = ctr.get_archive("/tmp/f")
    assert b"abc\n" in b"".join(bits)


def test_an_upload_refused_before_its_body_leaves_the_connection_usable(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    ctr = _container(whaled, busybox_image)
    body = _chunked(_tar({"f": bytes(6 << 20)}))  # past the pipe's high water mark
    with _connect(whaled) as sock:
        sock.sendall(_upload_head(f"/containers/{ctr.id}/archive"))  # no path: a 400
        ((status, answer),) = _responses(sock, 1)
        assert status == 400 and b"path is required" in answer
        sock.sendall(body + PING)
        assert _responses(sock, 1)[0][0] == 200
    with _connect(whaled) as sock:  # an unknown container: 404, same
        sock.sendall(_upload_head("/containers/nope/archive?path=/") + body + PING)
        assert [s for s, _ in _responses(sock, 2)] == [404, 200]


def test_bad_chunk_framing_ends_the_connection_only(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    ctr = _container(whaled, busybox_image)
    with _connect(whaled) as sock:
        sock.sendall(_upload_head(f"/containers/{ctr.id}/archive?path=/tmp") + b"zz\r\n")
        sock.settimeout(10)
        rest = b""
        while more := sock.recv(65536):
            rest += more  # an error answer at most, then the server closes
    assert whaled.request("GET", "/_ping")[0] == 200
    assert "Traceback" not in Path(whaled.log_path).read_text()


def test_a_client_that_leaves_mid_upload_leaves_nothing(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    tar = _tar({"Dockerfile": b"FROM busybox:latest\n", "data": bytes(8 << 20)})
    body = _chunked(tar)
    head = (b"POST /v1.45/build?t=left:1 HTTP/1.1\r\nHost: whaled\r\n"
            b"Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    with _connect(whaled) as sock:
        sock.sendall(head + body[: len(body) // 2])
    tmp = Path(whaled.data_root) / "builder" / "tmp"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and list(tmp.iterdir()):
        time.sleep(0.1)
    assert not list(tmp.iterdir())
    assert whaled.request("GET", "/_ping")[0] == 200
    assert whaled.client().images.list(name="left") == []
