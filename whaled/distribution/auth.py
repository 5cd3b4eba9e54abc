"""Registry authentication (pure: no sockets, no clock of its own).

- :func:`parse_challenges`: ``WWW-Authenticate`` values (RFC 7235: several challenges per
  value, ``token`` or ``quoted-string`` parameters with backslash escapes, case-insensitive
  scheme and parameter names).
- :func:`decode_registry_auth`: the ``X-Registry-Auth`` header (base64url JSON, as dockerd
  reads it: missing padding and the standard alphabet tolerated, keys case-insensitive).
- :class:`TokenCache`: bearer tokens per ``(realm, service, scope)`` until they expire.
- :class:`Authenticator`: the auth flow as a generator that yields requests and receives
  responses (httpx's shape): request → 401 challenge → token (GET realm with service/scope and
  basic credentials, or POST ``grant_type=refresh_token`` with an identity token, like docker)
  → the request again with ``Authorization: Bearer``. The I/O layer drives it.

Credentials never appear in a ``repr`` and nothing here logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from whaled.distribution.errors import NoBasicAuthCredentials, TokenError
from whaled.distribution.wire import HTTPRequest, HTTPResponse, registry_error
from whaled.errors import InvalidParameter

#: distribution's minimum (and default) token lifetime
MIN_TOKEN_LIFETIME = 60.0
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


# ------------------------------------------------------------------------------ challenges


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    scheme: str  # lower case: "basic", "bearer", ...
    params: dict[str, str] = field(default_factory=dict)  # lower-case names

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def at_end(self) -> bool:
        return self.i >= len(self.text)

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.i += 1

    def token(self, chars: frozenset[str] = _TCHAR) -> str:
        start = self.i
        while self.peek() and self.peek() in chars:
            self.i += 1
        return self.text[start : self.i]

    def quoted(self) -> str | None:
        """A quoted-string starting at the current ``"``; None if unterminated."""
        assert self.peek() == '"'
        self.i += 1
        out: list[str] = []
        while not self.at_end():
            c = self.text[self.i]
            if c == "\\" and self.i + 1 < len(self.text):
                out.append(self.text[self.i + 1])
                self.i += 2
                continue
            self.i += 1
            if c == '"':
                return "".join(out)
            out.append(c)
        return None

    def skip_to_comma(self) -> None:
        while not self.at_end() and self.peek() != ",":
            self.i += 1


def parse_challenges(values: str | Sequence[str]) -> list[Challenge]:
    """Every challenge in one or more ``WWW-Authenticate`` values, in order.

    Malformed parameters are dropped (the rest of the challenge is kept), like distribution's
    lenient parser; a ``token68`` credential is ignored (no registry scheme uses one).
    """
    out: list[Challenge] = []
    for value in [values] if isinstance(values, str) else values:
        out.extend(_parse_one_value(value))
    return out


def _parse_one_value(value: str) -> list[Challenge]:
    s = _Scanner(value)
    out: list[Challenge] = []
    while True:
        while s.peek() in (" ", "\t", ",") and s.peek():
            s.i += 1
        if s.at_end():
            return out
        scheme = s.token()
        if not scheme:
            s.skip_to_comma()
            continue
        params: dict[str, str] = {}
        out.append(Challenge(scheme=scheme.lower(), params=params))
        s.skip_ws()
        # token68 (e.g. "Negotiate abc==") : consume and ignore
        mark = s.i
        t68 = s.token(_TOKEN68)
        if t68:
            while s.peek() == "=":
                s.i += 1
            s.skip_ws()
            if s.at_end() or s.peek() == ",":
                continue
            s.i = mark
        while True:
            s.skip_ws()
            mark = s.i
            name = s.token()
            s.skip_ws()
            if not name or s.peek() != "=":
                # not a parameter: the start of the next challenge (or junk)
                s.i = mark
                if not name:
                    s.skip_to_comma()
                break
            s.i += 1
            s.skip_ws()
            if s.peek() == '"':
                quoted = s.quoted()
                if quoted is None:  # unterminated: drop it and the rest of this value
                    return out
                params[name.lower()] = quoted
            else:
                params[name.lower()] = s.token()
            s.skip_ws()
            if s.peek() == ",":
                s.i += 1
                continue
            if s.at_end():
                break
            # junk after a value: skip to the next comma and go on with parameters
            s.skip_to_comma()
            if s.peek() == ",":
                s.i += 1
    return out


# ------------------------------------------------------------------------------ credentials


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """What a client sent in ``X-Registry-Auth`` (secrets kept out of ``repr``)."""

    username: str = ""
    password: str = field(default="", repr=False)
    server_address: str = ""
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)


def _b64decode_lenient(value: str) -> bytes:
    """Base64 in either alphabet, with or without padding (dockerd accepts what clients send:
    the CLI and docker-py use URL-safe with padding, some tools the standard alphabet)."""
    text = value.strip().rstrip("=")
    if len(text) % 4 == 1:
        raise ValueError("invalid base64 length")
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def decode_registry_auth(header: str | None) -> Credentials:
    """Decode ``X-Registry-Auth``; an absent or empty header gives empty credentials.

    Raises InvalidParameter (``invalid X-Registry-Auth header: ...``) for bad base64, bad JSON
    or a JSON value that is not an object of strings.
    """
    if header is None or not header.strip():
        return Credentials()
    try:
        raw = _b64decode_lenient(header)
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise InvalidParameter(f"invalid X-Registry-Auth header: {_reason(e)}") from None
    if not isinstance(doc, dict):
        raise InvalidParameter(
            "invalid X-Registry-Auth header: json: cannot unmarshal "
            f"{type(doc).__name__} into Go value of type registry.AuthConfig"
        )
    return credentials_from(doc)


def decode_registry_config(header: str | None) -> dict[str, Credentials]:
    """Decode ``X-Registry-Config`` (a build's credentials: base64 JSON of registry →
    ``AuthConfig``); absent or empty gives none."""
    if header is None or not header.strip():
        return {}
    try:
        doc = json.loads(_b64decode_lenient(header).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise InvalidParameter(f"invalid X-Registry-Config header: {_reason(e)}") from None
    if not isinstance(doc, dict):
        raise InvalidParameter("invalid X-Registry-Config header: not a JSON object")
    return {str(k): credentials_from(v) for k, v in doc.items() if isinstance(v, dict)}


def credentials_from(doc: Mapping[str, Any]) -> Credentials:
    """Credentials from an ``AuthConfig`` object (keys case-insensitive; ``auth`` is
    base64 ``user:password`` as in ``~/.docker/config.json``). InvalidParameter for values
    that are not strings."""
    fields: dict[str, str] = {}
    for key, value in doc.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidParameter(
                f"invalid X-Registry-Auth header: json: cannot unmarshal {type(value).__name__}"
                f" into Go struct field AuthConfig.{key} of type string"
            )
        fields[str(key).lower()] = value
    username = fields.get("username", "")
    password = fields.get("password", "")
    if not username and fields.get("auth"):
        # "auth": base64("user:password"), as in ~/.docker/config.json
        try:
            user_pass = _b64decode_lenient(fields["auth"]).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError) as e:
            raise InvalidParameter(f"invalid X-Registry-Auth header: {_reason(e)}") from None
        username, _, password = user_pass.partition(":")
    return Credentials(
        username=username,
        password=password,
        server_address=fields.get("serveraddress", ""),
        identity_token=fields.get("identitytoken", ""),
        registry_token=fields.get("registrytoken", ""),
    )


def _reason(e: Exception) -> str:
    # never echo the header (it holds secrets); the exception text is about its shape
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON: {e.msg}"
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8"
    return "illegal base64 data"


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


# ------------------------------------------------------------------------------ tokens


def repository_scope(name: str, actions: Sequence[str] = ("pull",)) -> str:
    """``repository:<path>:pull`` / ``repository:<path>:pull,push``."""
    return f"repository:{name}:{','.join(actions)}"


def token_query(
    challenge: Challenge, scopes: Sequence[str], username: str = ""
) -> list[tuple[str, str]]:
    """Query parameters of a token GET: ``service``, one ``scope`` per scope, ``account``."""
    params: list[tuple[str, str]] = []
    service = challenge.params.get("service")
    if service:
        params.append(("service", service))
    params.extend(("scope", scope) for scope in scopes)
    if username:
        params.append(("account", username))
    return params


def token_url(challenge: Challenge, scopes: Sequence[str], username: str = "") -> str:
    realm = challenge.realm
    query = urlencode(token_query(challenge, scopes, username))
    if not query:
        return realm
    return realm + ("&" if urlsplit(realm).query else "?") + query


def refresh_token_form(challenge: Challenge, scopes: Sequence[str], refresh_token: str) -> bytes:
    """Form body of docker's OAuth2 POST with an identity token."""
    form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", "docker"),
    ]
    service = challenge.params.get("service")
    if service:
        form.append(("service", service))
    if scopes:
        form.append(("scope", " ".join(scopes)))
    return urlencode(form).encode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenResponse:
    token: str = field(repr=False)
    expires_at: float
    refresh_token: str = field(default="", repr=False)


def parse_rfc3339(value: str) -> float | None:
    text = value.strip()
    if not text:
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python < 3.12 handles at most 6 fractional digits
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6]}{rest}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def parse_token_response(body: bytes, now: float) -> TokenResponse:
    """A token server's JSON: ``token`` (or ``access_token``), ``expires_in`` (at least
    :data:`MIN_TOKEN_LIFETIME`), ``issued_at`` (default: now), ``refresh_token``."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TokenError("unable to decode token response: invalid JSON") from None
    if not isinstance(doc, dict):
        raise TokenError("unable to decode token response: not a JSON object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenError("authorization server did not include a token in the response")
    expires_in = doc.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float) else 0.0
    lifetime = max(lifetime, MIN_TOKEN_LIFETIME)
    issued = doc.get("issued_at")
    issued_at = parse_rfc3339(issued) if isinstance(issued, str) else None
    refresh = doc.get("refresh_token")
    return TokenResponse(
        token=token,
        expires_at=(issued_at if issued_at is not None else now) + lifetime,
        refresh_token=refresh if isinstance(refresh, str) else "",
    )


TokenKey = tuple[str, str, str]


class TokenCache:
    """Bearer tokens by ``(realm, service, scope)``; an entry is valid while ``now <
    expires_at``. Not thread-safe by itself: one per pull/push, or guard it."""

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, TokenResponse] = {}

    @staticmethod
    def key(challenge: Challenge, scopes: Sequence[str]) -> TokenKey:
        return (challenge.realm, challenge.params.get("service", ""), " ".join(scopes))

    def get(self, key: TokenKey, now: float) -> TokenResponse | None:
        entry = self._tokens.get(key)
        if entry is None:
            return None
        if now >= entry.expires_at:
            del self._tokens[key]
            return None
        return entry

    def put(self, key: TokenKey, token: TokenResponse) -> None:
        self._tokens[key] = token

    def __len__(self) -> int:
        return len(self._tokens)


# ------------------------------------------------------------------------------ the flow

AuthFlow = Generator[HTTPRequest, HTTPResponse, HTTPResponse]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Authenticator:
    """Authenticates requests to one registry (pure state: known challenges, tokens).

    ``flow(request, scopes)`` yields the requests to make and returns the final response; the
    driver performs each yielded request and sends back its response (with the body when the
    request says ``read_body``). A challenge seen once is remembered per origin, so later
    requests carry credentials up front instead of taking a 401 first.
    """

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        cache: TokenCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials or Credentials()
        self.cache = cache if cache is not None else TokenCache()
        self.clock = clock
        self._challenges: dict[str, Challenge] = {}
        #: the last token response with a refresh token (``docker login`` returns it)
        self.last_refresh_token = ""

    def challenge_for(self, url: str) -> Challenge | None:
        return self._challenges.get(_origin(url))

    def learn(self, url: str, response: HTTPResponse) -> None:
        """Remember the challenge of a 401 answer (the ping's), for ``url``'s origin."""
        if response.status != 401:
            return
        chosen = _choose(parse_challenges(response.header_all("www-authenticate")))
        if chosen is not None:
            self._challenges[_origin(url)] = chosen

    def flow(self, request: HTTPRequest, scopes: Sequence[str] = ()) -> AuthFlow:
        known = self._challenges.get(_origin(request.url))
        authorization: str | None = None
        if known is not None:
            authorization = yield from self._authorization(known, request, scopes)
        response = yield request.with_header("authorization", authorization)
        if response.status != 401:
            return response
        challenges = parse_challenges(response.header_all("www-authenticate"))
        chosen = _choose(challenges)
        if chosen is None:
            return response
        if known is not None and authorization is not None and _same(known, chosen):
            return response  # credentials for this very challenge were refused
        self._challenges[_origin(request.url)] = chosen
        authorization = yield from self._authorization(chosen, request, scopes)
        return (yield request.with_header("authorization", authorization))

    def _authorization(
        self, challenge: Challenge, request: HTTPRequest, scopes: Sequence[str]
    ) -> Generator[HTTPRequest, HTTPResponse, str]:
        creds = self.credentials
        if challenge.scheme == "basic":
            if not (creds.username or creds.password):
                raise NoBasicAuthCredentials(request.method.capitalize(), request.url)
            return basic_authorization(creds.username, creds.password)
        if creds.registry_token:
            return "Bearer " + creds.registry_token
        token = yield from self._token(challenge, scopes)
        return "Bearer " + token

    def _token(
        self, challenge: Challenge, scopes: Sequence[str]
    ) -> Generator[HTTPRequest, HTTPResponse, str]:
        key = TokenCache.key(challenge, scopes)
        cached = self.cache.get(key, self.clock())
        if cached is not None:
            return cached.token
        if not challenge.realm:
            raise TokenError("no realm specified for token auth challenge")
        scheme = urlsplit(challenge.realm).scheme
        if scheme not in ("http", "https"):
            raise TokenError(f"unsupported token realm: {challenge.realm}")
        creds = self.credentials
        response: HTTPResponse | None = None
        if creds.identity_token:
            response = yield HTTPRequest(
                method="POST",
                url=challenge.realm,
                headers=(("content-type", "application/x-www-form-urlencoded"),),
                body=refresh_token_form(challenge, scopes, creds.identity_token),
                read_body=True,
            )
            if response.status in (404, 405):  # no OAuth2 POST here: fall back to GET
                response = None
        if response is None:
            request = HTTPRequest(
                method="GET",
                url=token_url(challenge, scopes, creds.username),
                read_body=True,
            )
            if creds.username or creds.password:
                request = request.with_header(
                    "authorization", basic_authorization(creds.username, creds.password)
                )
            response = yield request
        if not 200 <= response.status < 300:
            err = registry_error(response.status, response.body)
            raise TokenError(f"token request to {challenge.realm} failed: {err}")
        token = parse_token_response(response.body, self.clock())
        if token.refresh_token:
            self.last_refresh_token = token.refresh_token
        self.cache.put(key, token)
        return token.token


def _choose(challenges: Sequence[Challenge]) -> Challenge | None:
    """Bearer before basic, like docker's authorizer (token handler first)."""
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None


def _same(a: Challenge, b: Challenge) -> bool:
    return (
        a.scheme == b.scheme
        and a.realm == b.realm
        and a.params.get("service") == b.params.get("service")
    )


def bearer_error(response: HTTPResponse) -> tuple[str, str] | None:
    """``(code, message)`` from a Bearer challenge's RFC 6750 ``error`` parameter:
    ``invalid_token`` → UNAUTHORIZED, ``insufficient_scope`` → DENIED (distribution's
    ``HandleErrorResponse``)."""
    for c in parse_challenges(response.header_all("www-authenticate")):
        if c.scheme != "bearer":
            continue
        code = {"invalid_token": "UNAUTHORIZED", "insufficient_scope": "DENIED"}.get(
            c.params.get("error", "")
        )
        if code:
            return code, c.params.get("error_description", "")
    return None
