from __future__ import annotations

import pytest

from whaled.distribution.auth import Challenge, parse_challenges


def test_bearer_with_realm_service_scope() -> None:
    [c] = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert c == Challenge(
        scheme="bearer",
        params={
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/busybox:pull",
        },
    )


def test_basic() -> None:
    [c] = parse_challenges('Basic realm="Registry Realm"')
    assert c.scheme == "basic"
    assert c.realm == "Registry Realm"


def test_scheme_and_param_names_are_case_insensitive() -> None:
    [c] = parse_challenges('BEARER Realm="r", SERVICE=svc')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "r", "service": "svc"}


def test_comma_inside_quotes_is_part_of_the_value() -> None:
    [c] = parse_challenges('Bearer realm="r",scope="repository:a/b:pull,push"')
    assert c.params["scope"] == "repository:a/b:pull,push"


def test_escaped_quote_and_backslash() -> None:
    [c] = parse_challenges(r'Basic realm="say \"hi\" \\ there"')
    assert c.realm == 'say "hi" \\ there'


def test_whitespace_around_equals_and_commas() -> None:
    [c] = parse_challenges('Bearer  realm = "r" ,  service= "s"  ,scope ="x"')
    assert c.params == {"realm": "r", "service": "s", "scope": "x"}


def test_several_challenges_in_one_value() -> None:
    cs = parse_challenges('Basic realm="a", Bearer realm="b",service="s"')
    assert [(c.scheme, c.params) for c in cs] == [
        ("basic", {"realm": "a"}),
        ("bearer", {"realm": "b", "service": "s"}),
    ]


def test_several_header_values() -> None:
    cs = parse_challenges(['Basic realm="a"', 'Bearer realm="b"'])
    assert [c.scheme for c in cs] == ["basic", "bearer"]


def test_scheme_without_params_then_another() -> None:
    cs = parse_challenges('Negotiate, Basic realm="x"')
    assert [(c.scheme, c.params) for c in cs] == [("negotiate", {}), ("basic", {"realm": "x"})]


def test_token68_is_skipped() -> None:
    cs = parse_challenges('Negotiate abc123==, Bearer realm="r"')
    assert [(c.scheme, c.params) for c in cs] == [("negotiate", {}), ("bearer", {"realm": "r"})]


def test_unterminated_quote_drops_the_param() -> None:
    [c] = parse_challenges('Bearer service="s", realm="https://x')
    assert c.params == {"service": "s"}


def test_empty_quoted_value_and_unquoted_token() -> None:
    [c] = parse_challenges('Bearer realm="",error=insufficient_scope')
    assert c.params == {"realm": "", "error": "insufficient_scope"}


@pytest.mark.parametrize("value", ["", "   ", ",,", " , , "])
def test_empty_values(value: str) -> None:
    assert parse_challenges(value) == []
