"""Canned engine answers for the docker CLI: what ``docker exec`` and ``docker run`` cost
the CLI itself, with an engine that does no work at all.

``bench.floorserver`` replays these bytes (a ``101`` answer ends its connection, as a stream
whose process has exited, and ``HEAD /_ping`` gets the head only). The CLI then goes through
its whole request sequence for the command (start-up, ``/_ping``, inspect or create, the
hijacked stream, wait or exec inspect) and exits 0. That time is the CLI's own share of the
figure, which no engine can go below; the ``runc`` floor is the runtime's share.
"""

from __future__ import annotations

import json
from typing import Any

#: Ids the canned answers hand out (the CLI sends them back in its next paths).
CONTAINER_ID = "c" * 64
EXEC_ID = "e" * 64


def raw_response(status: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
    """A complete HTTP/1.1 response as an engine sends it (``Api-Version`` 1.45)."""
    head = [f"HTTP/1.1 {status}", "Api-Version: 1.45", "Server: Docker/canned"]
    if body:
        head.append(f"Content-Type: {content_type}")
    if not status.startswith("204"):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _json(status: str, doc: Any) -> bytes:
    return raw_response(status, json.dumps(doc).encode() + b"\n")


#: The answer to a hijacked ``exec/start`` or ``attach``: a stream that ends at once.
HIJACKED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: 1.45\r\n\r\n"
)
#: ``/_ping`` and an empty ``/containers/json`` as an engine answers them (also the floor
#: server's answers for the start-up, memory and requests/s figures).
PING_RAW = (
    b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\nCache-Control: no-cache, no-store, must-revalidate"
    b"\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\nPragma: no-cache\r\n"
    b"\r\nOK"
)
EMPTY_LIST_RAW = (
    b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\nContent-Type: application/json\r\n"
    b"Content-Length: 3\r\n\r\n[]\n"
)


def exec_answers(container: str) -> dict[str, bytes]:
    """``docker exec CONTAINER true``: inspect, exec create, exec start, exec inspect."""
    inspect = {
        "Id": CONTAINER_ID,
        "Name": "/" + container,
        "State": {"Status": "running", "Running": True, "Pid": 1},
        "Config": {"Tty": False, "Image": "busybox"},
    }
    exec_inspect = {
        "ID": EXEC_ID,
        "Running": False,
        "ExitCode": 0,
        "ProcessConfig": {"tty": False, "entrypoint": "true", "arguments": []},
        "OpenStdin": False,
        "OpenStderr": True,
        "OpenStdout": True,
        "ContainerID": CONTAINER_ID,
        "Pid": 0,
    }
    return {
        "/_ping": PING_RAW,
        f"/containers/{container}/json": _json("200 OK", inspect),
        f"/containers/{container}/exec": _json("201 Created", {"Id": EXEC_ID}),
        f"/exec/{EXEC_ID}/start": HIJACKED,
        f"/exec/{EXEC_ID}/json": _json("200 OK", exec_inspect),
    }


def run_answers() -> dict[str, bytes]:
    """``docker run --rm ...``: create, attach, wait (condition removed), start."""
    base = f"/containers/{CONTAINER_ID}"
    return {
        "/_ping": PING_RAW,
        "/containers/create": _json("201 Created", {"Id": CONTAINER_ID, "Warnings": []}),
        f"{base}/attach": HIJACKED,
        f"{base}/wait": _json("200 OK", {"StatusCode": 0, "Error": None}),
        f"{base}/start": raw_response("204 No Content"),
    }
