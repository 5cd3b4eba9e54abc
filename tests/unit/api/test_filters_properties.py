"""Property tests of filter parsing: any ``filters`` value (JSON or not) gives Filters or
the domain 400 error (InvalidFilter), never another exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from whaled.api.filters import Filters, InvalidFilter, parse_filters, parse_timestamp
from whaled.errors import InvalidParameter

PROPS = settings(max_examples=400, deadline=None)

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# The shapes clients send: {"key": ["v"]} and the older {"key": {"v": true}}.
_FILTER_DOCS = st.dictionaries(
    st.text(max_size=10),
    st.one_of(
        st.lists(st.text(max_size=10), max_size=3),
        st.dictionaries(st.text(max_size=10), st.one_of(st.booleans(), _SCALARS), max_size=3),
        _JSON,
    ),
    max_size=4,
)


def _check(raw: str) -> None:
    try:
        out = parse_filters(raw)
    except InvalidFilter as e:
        assert str(e).startswith("invalid filter")
        return
    assert isinstance(out, Filters)
    for key in out:
        assert all(isinstance(v, str) for v in out.get(key))


@PROPS
@given(st.one_of(_JSON, _FILTER_DOCS))
def test_any_json_gives_filters_or_invalid_filter(doc: object) -> None:
    _check(json.dumps(doc))


@PROPS
@given(st.text(max_size=60))
def test_any_text_gives_filters_or_invalid_filter(raw: str) -> None:
    _check(raw)


@PROPS
@given(st.dictionaries(st.text(max_size=10), st.lists(st.text(max_size=10), max_size=3)))
def test_lists_of_strings_are_kept_in_order_without_duplicates(doc: dict[str, list[str]]) -> None:
    out = parse_filters(json.dumps(doc))
    for key, values in doc.items():
        assert list(out.get(key)) == list(dict.fromkeys(values))


@PROPS
@given(st.one_of(st.text(max_size=40), st.from_regex(r"[0-9T:.Z+-]{1,35}", fullmatch=True)))
def test_timestamps_parse_or_raise_the_domain_error(value: str) -> None:
    try:
        assert isinstance(parse_timestamp(value, -1), int)
    except InvalidParameter:
        pass
