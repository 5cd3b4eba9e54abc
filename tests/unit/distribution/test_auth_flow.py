"""The auth flow, driven by a scripted fake registry (no sockets) and a fake clock."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from whaled.distribution.auth import (
    MIN_TOKEN_LIFETIME,
    Authenticator,
    AuthFlow,
    Challenge,
    Credentials,
    TokenCache,
    bearer_error,
    parse_token_response,
    repository_scope,
    token_url,
)
from whaled.distribution.errors import NoBasicAuthCredentials, TokenError
from whaled.distribution.wire import HTTPRequest, HTTPResponse

REGISTRY = "https://reg.example:5000"
REALM = "https://auth.example/token"
BEARER = f'Bearer realm="{REALM}",service="reg.example"'
SCOPE = repository_scope("t/x")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Handler = Callable[[HTTPRequest], HTTPResponse]


def drive(flow: AuthFlow, handler: Handler, log: list[HTTPRequest]) -> HTTPResponse:
    req = next(flow)
    while True:
        log.append(req)
        resp = handler(req)
        try:
            req = flow.send(resp)
        except StopIteration as stop:
            assert stop.value is resp
            return resp


def token_body(token: str, **extra: object) -> bytes:
    return json.dumps({"token": token, **extra}).encode()


class FakeRegistry:
    """401 + Bearer challenge unless the request carries ``Bearer <good>``."""

    def __init__(self, good: str = "T1", challenge: str = BEARER) -> None:
        self.good = good
        self.challenge = challenge
        self.issued = 0

    def __call__(self, req: HTTPRequest) -> HTTPResponse:
        if req.url.startswith(REALM):
            self.issued += 1
            return HTTPResponse(status=200, body=token_body(self.good, expires_in=300))
        if req.header("authorization") == f"Bearer {self.good}":
            return HTTPResponse(status=200)
        return HTTPResponse(status=401, headers=(("www-authenticate", self.challenge),))


def manifest_request() -> HTTPRequest:
    return HTTPRequest(method="GET", url=f"{REGISTRY}/v2/t/x/manifests/1")


def test_anonymous_bearer_flow() -> None:
    reg, log = FakeRegistry(), []
    auth = Authenticator(clock=Clock())
    resp = drive(auth.flow(manifest_request(), [SCOPE]), reg, log)
    assert resp.status == 200
    assert [r.url.split("?")[0] for r in log] == [log[0].url, REALM, log[0].url]
    token_req = log[1]
    assert token_req.read_body
    assert token_req.header("authorization") is None
    q = parse_qs(urlsplit(token_req.url).query)
    assert q == {"service": ["reg.example"], "scope": ["repository:t/x:pull"]}
    assert log[2].header("authorization") == "Bearer T1"


def test_token_request_with_basic_credentials_and_account() -> None:
    reg, log = FakeRegistry(), []
    auth = Authenticator(Credentials(username="alice", password="pw"), clock=Clock())
    drive(auth.flow(manifest_request(), [SCOPE]), reg, log)
    token_req = log[1]
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()
    assert token_req.header("authorization") == expected
    assert parse_qs(urlsplit(token_req.url).query)["account"] == ["alice"]


def test_identity_token_uses_oauth_post() -> None:
    reg, log = FakeRegistry(), []
    auth = Authenticator(Credentials(identity_token="refresh-me"), clock=Clock())
    resp = drive(auth.flow(manifest_request(), [SCOPE]), reg, log)
    assert resp.status == 200
    post = log[1]
    assert post.method == "POST"
    assert post.url == REALM
    assert post.header("content-type") == "application/x-www-form-urlencoded"
    assert post.header("authorization") is None
    form = parse_qs((post.body or b"").decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == ["refresh-me"]
    assert form["service"] == ["reg.example"]
    assert form["scope"] == ["repository:t/x:pull"]
    assert form["client_id"] == ["docker"]


def test_identity_token_falls_back_to_get_when_post_is_not_served() -> None:
    log: list[HTTPRequest] = []
    reg = FakeRegistry()

    def handler(req: HTTPRequest) -> HTTPResponse:
        if req.method == "POST":
            return HTTPResponse(status=404)
        return reg(req)

    auth = Authenticator(Credentials(identity_token="x"), clock=Clock())
    assert drive(auth.flow(manifest_request(), [SCOPE]), handler, log).status == 200
    assert [r.method for r in log] == ["GET", "POST", "GET", "GET"]


def test_registry_token_is_sent_as_bearer_without_token_server() -> None:
    reg, log = FakeRegistry(good="given"), []
    auth = Authenticator(Credentials(registry_token="given"), clock=Clock())
    assert drive(auth.flow(manifest_request(), [SCOPE]), reg, log).status == 200
    assert reg.issued == 0


def test_token_is_cached_and_challenge_remembered() -> None:
    reg, clock = FakeRegistry(), Clock()
    auth = Authenticator(clock=clock)
    drive(auth.flow(manifest_request(), [SCOPE]), reg, [])
    log: list[HTTPRequest] = []
    drive(auth.flow(manifest_request(), [SCOPE]), reg, log)
    # second request: token sent up front, no 401, no token request
    assert len(log) == 1
    assert log[0].header("authorization") == "Bearer T1"
    assert reg.issued == 1


def test_token_expires_with_the_clock() -> None:
    reg, clock = FakeRegistry(), Clock()
    auth = Authenticator(clock=clock)
    drive(auth.flow(manifest_request(), [SCOPE]), reg, [])
    clock.now += 299
    drive(auth.flow(manifest_request(), [SCOPE]), reg, [])
    assert reg.issued == 1
    clock.now += 2  # 301 s after issue: expired (expires_in=300)
    log: list[HTTPRequest] = []
    drive(auth.flow(manifest_request(), [SCOPE]), reg, log)
    assert reg.issued == 2
    assert log[0].url.startswith(REALM)  # fetched before the request


def test_other_scope_gets_its_own_token() -> None:
    reg = FakeRegistry()
    auth = Authenticator(clock=Clock())
    drive(auth.flow(manifest_request(), [SCOPE]), reg, [])
    drive(auth.flow(manifest_request(), [repository_scope("t/y")]), reg, [])
    assert reg.issued == 2
    assert len(auth.cache) == 2


def test_refused_token_returns_the_401_after_one_retry() -> None:
    log: list[HTTPRequest] = []
    reg = FakeRegistry(good="never-issued")

    def handler(req: HTTPRequest) -> HTTPResponse:
        if req.url.startswith(REALM):
            return HTTPResponse(status=200, body=token_body("useless"))
        return reg(req)

    auth = Authenticator(clock=Clock())
    resp = drive(auth.flow(manifest_request(), [SCOPE]), handler, log)
    assert resp.status == 401
    assert len(log) == 3


def test_basic_challenge_with_credentials() -> None:
    good = "Basic " + base64.b64encode(b"u:p").decode()
    log: list[HTTPRequest] = []

    def handler(req: HTTPRequest) -> HTTPResponse:
        if req.header("authorization") == good:
            return HTTPResponse(status=200)
        return HTTPResponse(status=401, headers=(("www-authenticate", 'Basic realm="R"'),))

    auth = Authenticator(Credentials(username="u", password="p"))
    assert drive(auth.flow(manifest_request()), handler, log).status == 200
    assert len(log) == 2
    # remembered: the next request carries basic auth up front
    log.clear()
    assert drive(auth.flow(manifest_request()), handler, log).status == 200
    assert len(log) == 1


def test_basic_challenge_without_credentials_says_so() -> None:
    def handler(req: HTTPRequest) -> HTTPResponse:
        return HTTPResponse(status=401, headers=(("www-authenticate", 'Basic realm="R"'),))

    with pytest.raises(NoBasicAuthCredentials) as e:
        drive(Authenticator().flow(manifest_request()), handler, [])
    assert str(e.value) == f'Get "{REGISTRY}/v2/t/x/manifests/1": no basic auth credentials'


def test_bearer_preferred_over_basic() -> None:
    reg = FakeRegistry(challenge=f'Basic realm="R", {BEARER}')
    log: list[HTTPRequest] = []
    assert drive(Authenticator(clock=Clock()).flow(manifest_request(), [SCOPE]), reg, log)
    assert log[1].url.startswith(REALM)


def test_no_challenge_returns_the_401() -> None:
    def handler(req: HTTPRequest) -> HTTPResponse:
        return HTTPResponse(status=401)

    assert drive(Authenticator().flow(manifest_request()), handler, []).status == 401


def test_token_server_refusal_is_a_token_error() -> None:
    def handler(req: HTTPRequest) -> HTTPResponse:
        if req.url.startswith(REALM):
            return HTTPResponse(status=401, body=b'{"details":"incorrect username or password"}')
        return HTTPResponse(status=401, headers=(("www-authenticate", BEARER),))

    with pytest.raises(TokenError) as e:
        drive(
            Authenticator(Credentials(username="u", password="bad")).flow(
                manifest_request(), [SCOPE]
            ),
            handler,
            [],
        )
    assert "incorrect username or password" in str(e.value)
    assert "bad" not in str(e.value).replace("incorrect username or password", "")


def test_parse_token_response_lifetimes() -> None:
    t = parse_token_response(b'{"access_token": "a"}', now=100.0)
    assert (t.token, t.expires_at) == ("a", 100.0 + MIN_TOKEN_LIFETIME)
    t = parse_token_response(b'{"token": "a", "expires_in": 10}', now=100.0)
    assert t.expires_at == 100.0 + MIN_TOKEN_LIFETIME  # raised to the minimum
    t = parse_token_response(
        b'{"token": "a", "expires_in": 600, "issued_at": "2026-01-01T00:00:00.123456789Z",'
        b' "refresh_token": "r"}',
        now=0.0,
    )
    assert t.expires_at == pytest.approx(1767225600.123456 + 600)
    assert t.refresh_token == "r"
    with pytest.raises(TokenError):
        parse_token_response(b'{"expires_in": 5}', now=0.0)
    with pytest.raises(TokenError):
        parse_token_response(b"nope", now=0.0)


def test_token_cache_expiry_boundary() -> None:
    cache = TokenCache()
    key = TokenCache.key(Challenge(scheme="bearer", params={"realm": REALM}), [SCOPE])
    cache.put(key, parse_token_response(b'{"token": "a", "expires_in": 120}', now=0.0))
    assert cache.get(key, 119.9) is not None
    assert cache.get(key, 120.0) is None
    assert len(cache) == 0


def test_token_url_keeps_realm_query() -> None:
    c = Challenge(scheme="bearer", params={"realm": "https://a/token?x=1", "service": "s"})
    assert token_url(c, ["repository:a:pull", "repository:b:pull,push"]) == (
        "https://a/token?x=1&service=s&scope=repository%3Aa%3Apull"
        "&scope=repository%3Ab%3Apull%2Cpush"
    )


def test_bearer_error_codes() -> None:
    resp = HTTPResponse(
        status=401,
        headers=(("www-authenticate", BEARER + ',error="insufficient_scope"'),),
    )
    assert bearer_error(resp) == ("DENIED", "")
    resp = HTTPResponse(
        status=401,
        headers=(("www-authenticate", BEARER + ',error="invalid_token",error_description="x"'),),
    )
    assert bearer_error(resp) == ("UNAUTHORIZED", "x")
    assert bearer_error(HTTPResponse(status=401, headers=(("www-authenticate", BEARER),))) is None


def test_request_repr_hides_authorization_value() -> None:
    req = manifest_request().with_header("Authorization", "Bearer s3cret")
    assert "s3cret" not in repr(req)
