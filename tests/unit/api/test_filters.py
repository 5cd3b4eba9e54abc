"""Parsing of Docker's ``filters`` query parameter and since/until timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from whaled.api.filters import Filters, InvalidFilter, parse_filters, parse_timestamp
from whaled.errors import InvalidParameter

# --- parse_filters -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "{}", "null"])
def test_empty_input_gives_empty_filters(raw: str | None) -> None:
    filters = parse_filters(raw)
    assert not filters
    assert len(filters) == 0
    assert filters == Filters()


def test_set_form_as_sent_by_the_cli() -> None:
    filters = parse_filters('{"label":{"a=b":true,"c":true},"type":{"container":true}}')
    assert filters.get("label") == ("a=b", "c")
    assert filters.get("type") == ("container",)
    assert filters.keys() == ("label", "type")
    assert list(filters) == ["label", "type"]


def test_legacy_list_form() -> None:
    filters = parse_filters('{"label":["a=b","c","c"],"dangling":["true"]}')
    assert filters.get("label") == ("a=b", "c")  # duplicates dropped
    assert filters.get("dangling") == ("true",)
    assert filters == parse_filters('{"label":{"c":true,"a=b":true},"dangling":{"true":true}}')


def test_false_entries_are_not_values() -> None:
    filters = parse_filters('{"type":{"container":false,"image":true}}')
    assert filters.get("type") == ("image",)


def test_key_without_values_is_contained_but_filters_nothing() -> None:
    filters = parse_filters('{"type":{},"label":null}')
    assert filters.contains("type")
    assert filters.contains("label")
    assert filters.get("type") == ()
    assert filters.exact_match("type", "anything")
    assert filters.fuzzy_match("type", "anything")
    assert filters.match_kv("label", {})


def test_absent_key() -> None:
    filters = parse_filters('{"type":["container"]}')
    assert not filters.contains("label")
    assert filters.get("label") == ()


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("{not json", "not valid JSON"),
        pytest.param("[" * 5000 + "]" * 5000, "nested too deeply", id="deep"),
        ('["type"]', "expected a JSON object, not array"),
        ('"type"', "expected a JSON object, not string"),
        ('{"type":"container"}', "values of 'type' must be an object or a list, not string"),
        ('{"type":[1]}', "values of 'type' must be strings, not number"),
        ('{"type":{"container":"yes"}}', "value 'container' of 'type' must map to a boolean"),
    ],
)
def test_bad_filters_are_invalid_parameter(raw: str, detail: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_filters(raw)
    message = str(info.value)
    assert message.startswith("invalid filter: ")
    assert detail in message


def test_filters_are_immutable() -> None:
    source = {"type": ["container"]}
    filters = Filters(source)
    source["type"].append("image")
    assert filters.get("type") == ("container",)
    with pytest.raises(AttributeError):
        filters._fields = {}
    with pytest.raises(TypeError):
        Filters({"type": "container"})
    assert hash(filters) == hash(Filters({"type": ["container"]}))
    assert repr(filters) == "Filters({'type': ('container',)})"
    assert filters != {"type": ("container",)}


def test_validate_accepts_allowed_keys() -> None:
    parse_filters('{"type":["container"],"label":["a"]}').validate({"type", "label", "x"})


def test_validate_names_the_first_bad_key_like_dockerd() -> None:
    filters = parse_filters('{"type":["container"],"colour":["red"]}')
    with pytest.raises(InvalidParameter) as info:
        filters.validate(["type", "label"])
    assert str(info.value) == "invalid filter 'colour'"
    assert isinstance(info.value, InvalidFilter)


def test_exact_match() -> None:
    filters = Filters({"status": ["running", "paused"]})
    assert filters.exact_match("status", "running")
    assert filters.exact_match("status", "paused")
    assert not filters.exact_match("status", "run")
    assert filters.exact_match("other", "anything")


def test_fuzzy_match_is_equal_or_prefix() -> None:
    filters = Filters({"id": ["abc", "f00"]})
    assert filters.fuzzy_match("id", "abc")
    assert filters.fuzzy_match("id", "abcdef")
    assert filters.fuzzy_match("id", "f00d")
    assert not filters.fuzzy_match("id", "xabc")
    assert not filters.fuzzy_match("id", "ab")
    assert filters.fuzzy_match("name", "whatever")


def test_match_kv() -> None:
    labels = {"tier": "front", "env": "prod", "empty": ""}
    assert Filters({"label": ["tier"]}).match_kv("label", labels)
    assert Filters({"label": ["tier=front"]}).match_kv("label", labels)
    assert not Filters({"label": ["tier=back"]}).match_kv("label", labels)
    assert not Filters({"label": ["nope"]}).match_kv("label", labels)
    assert Filters({"label": ["empty="]}).match_kv("label", labels)
    assert not Filters({"label": ["env="]}).match_kv("label", labels)
    # All values must hold (dockerd's MatchKVList).
    assert Filters({"label": ["tier", "env=prod"]}).match_kv("label", labels)
    assert not Filters({"label": ["tier", "env=dev"]}).match_kv("label", labels)
    assert not Filters({"label": ["tier"]}).match_kv("label", {})
    assert Filters().match_kv("label", {})


@pytest.mark.parametrize(
    ("values", "expected"),
    [(["true"], True), (["1"], True), (["false"], False), (["0"], False), (["1", "true"], True)],
)
def test_bool_value(values: list[str], expected: bool) -> None:
    assert Filters({"dangling": values}).bool_value("dangling") is expected


def test_bool_value_default_when_absent() -> None:
    assert Filters().bool_value("dangling") is False
    assert Filters().bool_value("dangling", default=True) is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "invalid filter 'dangling'"),
        (["yes"], "invalid filter 'dangling=[yes]'"),
        (["true", "false"], "invalid filter 'dangling=[true false]'"),
    ],
)
def test_bool_value_invalid(values: list[str], message: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        Filters({"dangling": values}).bool_value("dangling")
    assert str(info.value) == message


# --- parse_timestamp ---------------------------------------------------------------------

S = 1_000_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000", 1_700_000_000 * S),
        ("0", 0),
        ("1700000000.123456789", 1_700_000_000 * S + 123_456_789),
        ("1700000000.5", 1_700_000_000 * S + 500_000_000),
        ("1700000000.000000001", 1_700_000_000 * S + 1),
        ("1700000000.0000000019", 1_700_000_000 * S + 1),  # beyond 9 digits: truncated
        ("-1.5", -S + 500_000_000),  # dockerd: time.Unix(-1, 500000000)
        ("+12", 12 * S),
    ],
)
def test_unix_timestamps(value: str, expected: int) -> None:
    assert parse_timestamp(value, -1) == expected


def test_empty_gives_default_seconds() -> None:
    assert parse_timestamp("", -1) == -S
    assert parse_timestamp(None, 0) == 0
    assert parse_timestamp("", 42) == 42 * S


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * S


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T10:00:00Z", _ns(datetime(2026, 11, 24, 10, tzinfo=UTC))),
        ("2026-11-24t10:00:00z", _ns(datetime(2026, 11, 24, 10, tzinfo=UTC))),
        ("2026-11-24 10:00:00Z", _ns(datetime(2026, 11, 24, 10, tzinfo=UTC))),
        (
            "2026-11-24T10:00:00.123456789Z",
            _ns(datetime(2026, 11, 24, 10, tzinfo=UTC)) + 123_456_789,
        ),
        ("2026-11-24T10:00:00.5Z", _ns(datetime(2026, 11, 24, 10, tzinfo=UTC)) + 500_000_000),
        ("2026-11-24T12:30:00+02:30", _ns(datetime(2026, 11, 24, 10, tzinfo=UTC))),
        ("2026-11-24T05:00:00-05:00", _ns(datetime(2026, 11, 24, 10, tzinfo=UTC))),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.5Z", -S + 500_000_000),
    ],
)
def test_rfc3339_timestamps(value: str, expected: int) -> None:
    assert parse_timestamp(value, -1) == expected


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "1700000000.",
        ".5",
        "1.2.3",
        "1_000",
        " 12",
        "12 ",
        "1.-5",
        "1e9",
        "\u0661\u0662",  # Arabic-Indic digits: int() would take them, we do not
        "2026-11-24",
        "2026-11-24T10:00:00",  # no offset
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-24T25:00:00Z",
        "2026-11-24T10:00:00+24:00",
        "2026-11-24T10:00:00+01:60",
        "10m",
    ],
)
def test_bad_timestamps_name_the_value(value: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_timestamp(value, -1)
    assert repr(value) in str(info.value)
