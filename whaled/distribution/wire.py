"""HTTP messages as plain values, and a registry's error answer read from one (pure).

The sans-I/O parts of the package (auth flows) speak in :class:`HTTPRequest` /
:class:`HTTPResponse`; :mod:`whaled.distribution.client` does the I/O. Header names are kept in
lower case; a name may repeat (``WWW-Authenticate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Protocol

from whaled.distribution.errors import RegistryError, UnexpectedResponse

Headers = tuple[tuple[str, str], ...]


class UploadBody(Protocol):
    """A request body read as it is sent (``http.client`` calls ``read``), rewound with
    ``seek(0)`` before each send (the auth flow may send a request twice)."""

    def read(self, n: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRequest:
    method: str
    url: str
    headers: Headers = ()
    #: bytes, or a seekable file (an upload: rewound before each send)
    body: bytes | UploadBody | None = None
    #: the flow that yielded this request needs the response body
    read_body: bool = False

    def with_header(self, name: str, value: str | None) -> HTTPRequest:
        """A copy with header ``name`` set to ``value`` (removed when ``None``)."""
        lname = name.lower()
        kept = tuple((k, v) for k, v in self.headers if k != lname)
        if value is not None:
            kept += ((lname, value),)
        return replace(self, headers=kept)

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k == lname:
                return v
        return None

    def __repr__(self) -> str:  # never show credentials
        names = ", ".join(k for k, _ in self.headers)
        return f"HTTPRequest({self.method} {self.url} headers=[{names}])"


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPResponse:
    status: int
    headers: Headers = ()
    #: empty unless the request asked for the body (``read_body``)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k == lname:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k == lname]


def make_headers(pairs: Any) -> Headers:
    """Normalise ``(name, value)`` pairs (any iterable) to lower-case names."""
    return tuple((str(k).lower(), str(v)) for k, v in pairs)


def registry_error(status: int, body: bytes) -> RegistryError | UnexpectedResponse:
    """The first error of a registry's ``{"errors": [...]}`` answer (distribution's
    ``parseHTTPErrorResponse``); a body that is not such a document gives
    :class:`UnexpectedResponse` (a 401 without one: ``unauthorized``)."""
    try:
        doc = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        doc = None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get("code")
        code = code.upper() if isinstance(code, str) and code else "UNKNOWN"
        message = first.get("message")
        return RegistryError(
            code, message if isinstance(message, str) else "", first.get("detail"), status
        )
    if isinstance(doc, dict) and isinstance(doc.get("details"), str):
        # Docker Hub's token server: {"details": "incorrect username or password"}
        code = "UNAUTHORIZED" if status == 401 else "UNKNOWN"
        return RegistryError(code, doc["details"], None, status)
    if status == 401:
        return RegistryError("UNAUTHORIZED", "", None, status)
    reason = (
        "no error details found in HTTP response body"
        if doc is not None or not body
        else "invalid JSON in HTTP response body"
    )
    text = json.dumps(body[:256].decode("utf-8", "replace"))
    message = f"error parsing HTTP {status} response body: {reason}: {text}"
    return UnexpectedResponse(message, status)
