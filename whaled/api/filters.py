"""Docker's ``filters`` query parameter and ``since``/``until`` timestamps, parsed purely.

``filters`` is JSON. The form clients send today maps each key to a set written as an object,
``{"label": {"a=b": true}}``; the legacy form (API < 1.22, still accepted by dockerd) maps it
to a list, ``{"label": ["a=b"]}``. Both become one immutable :class:`Filters`.

Matching follows dockerd's ``filters.Args``: a key with no values filters nothing, so every
``*_match`` method returns ``True`` for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, final

from whaled.errors import InvalidParameter

__all__ = ["Filters", "InvalidFilter", "parse_filters", "parse_timestamp"]

_NS_PER_SECOND: Final = 1_000_000_000


class InvalidFilter(InvalidParameter):
    """dockerd's wording: ``invalid filter``, ``invalid filter 'KEY'``,
    ``invalid filter 'KEY=[V1 V2]'``."""

    def __init__(
        self, key: str = "", values: Iterable[str] | None = None, *, detail: str = ""
    ) -> None:
        message = "invalid filter"
        if key:
            message += f" '{key}"
            if values is not None:
                # Go prints a []string as [a b].
                message += "=[" + " ".join(values) + "]"
            message += "'"
        if detail:
            message += f": {detail}"
        super().__init__(message)


@final
class Filters:
    """Parsed filters: key → distinct values, in the order the client sent them. Immutable."""

    __slots__ = ("_fields",)

    _fields: Mapping[str, tuple[str, ...]]

    def __init__(self, fields: Mapping[str, Iterable[str]] | None = None) -> None:
        frozen: dict[str, tuple[str, ...]] = {}
        for key, values in (fields or {}).items():
            if isinstance(values, str):
                raise TypeError(f"values of filter {key!r} must be an iterable of str, not str")
            # dict.fromkeys drops duplicates and keeps order.
            frozen[key] = tuple(dict.fromkeys(values))
        object.__setattr__(self, "_fields", frozen)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Filters is immutable")

    def __repr__(self) -> str:
        return f"Filters({dict(self._fields)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Filters):
            return NotImplemented
        return {k: set(v) for k, v in self._fields.items()} == {
            k: set(v) for k, v in other._fields.items()
        }

    def __hash__(self) -> int:
        return hash(frozenset((k, frozenset(v)) for k, v in self._fields.items()))

    def __bool__(self) -> bool:
        return bool(self._fields)

    def __len__(self) -> int:
        """Number of keys."""
        return len(self._fields)

    def __iter__(self) -> Iterator[str]:
        """The keys."""
        return iter(self._fields)

    def keys(self) -> tuple[str, ...]:
        return tuple(self._fields)

    def get(self, key: str) -> tuple[str, ...]:
        """The values for ``key``; empty when absent."""
        return self._fields.get(key, ())

    def contains(self, key: str) -> bool:
        """Whether ``key`` was given at all (even with no values)."""
        return key in self._fields

    def validate(self, allowed: Iterable[str]) -> None:
        """Raise ``invalid filter 'KEY'`` for the first key not in ``allowed``."""
        accepted = frozenset(allowed)
        for key in self._fields:
            if key not in accepted:
                raise InvalidFilter(key)

    def exact_match(self, key: str, value: str) -> bool:
        """True if ``key`` has no values or ``value`` is one of them."""
        values = self.get(key)
        return not values or value in values

    def fuzzy_match(self, key: str, value: str) -> bool:
        """True if ``key`` has no values, or ``value`` equals or starts with one of them."""
        values = self.get(key)
        return not values or any(value.startswith(prefix) for prefix in values)

    def match_kv(self, key: str, mapping: Mapping[str, str]) -> bool:
        """dockerd's MatchKVList: every value ``k`` / ``k=v`` must hold in ``mapping``.

        ``k`` means the key is present, ``k=v`` means it is present and equal to ``v``.
        Note the values are AND'ed, as in dockerd (``--filter label=a --filter label=b``
        needs both labels).
        """
        values = self.get(key)
        if not values:
            return True
        for value in values:
            name, sep, expected = value.partition("=")
            if name not in mapping:
                return False
            if sep and mapping[name] != expected:
                return False
        return True

    def bool_value(self, key: str, default: bool = False) -> bool:
        """The boolean a key such as ``dangling`` holds; ``default`` when absent.

        Accepts ``true``/``1`` and ``false``/``0``; no value, another value or both a true
        and a false one raise ``invalid filter 'KEY=[...]'`` as dockerd does.
        """
        if key not in self._fields:
            return default
        values = self._fields[key]
        if not values:
            raise InvalidFilter(key)
        is_true = "true" in values or "1" in values
        is_false = "false" in values or "0" in values
        if is_true == is_false:
            raise InvalidFilter(key, values)
        return is_true


def _describe_json_type(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _values_of(key: str, raw: object) -> list[str]:
    """The values of one key in either JSON form."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        # Modern form. Like dockerd, a value mapped to false is not a match; we drop it.
        values = []
        for value, enabled in raw.items():
            if not isinstance(enabled, bool):
                raise InvalidFilter(
                    detail=f"value {value!r} of {key!r} must map to a boolean, "
                    f"not {_describe_json_type(enabled)}"
                )
            if enabled:
                values.append(value)
        return values
    if isinstance(raw, list):
        for value in raw:
            if not isinstance(value, str):
                raise InvalidFilter(
                    detail=f"values of {key!r} must be strings, not {_describe_json_type(value)}"
                )
        return list(raw)
    raise InvalidFilter(
        detail=f"values of {key!r} must be an object or a list, not {_describe_json_type(raw)}"
    )


def parse_filters(raw: str | None) -> Filters:
    """Parse the ``filters`` query parameter; empty or ``None`` gives empty filters.

    Raises :class:`InvalidFilter` (an ``InvalidParameter``, HTTP 400) whose message starts
    with dockerd's ``invalid filter`` and says what is wrong.
    """
    if raw is None or raw == "":
        return Filters()
    try:
        document = json.loads(raw)
    except ValueError as err:
        # JSONDecodeError is a ValueError; so is a number too large to convert.
        raise InvalidFilter(detail=f"not valid JSON ({err})") from None
    except RecursionError:
        raise InvalidFilter(detail="not valid JSON (nested too deeply)") from None
    if document is None:
        return Filters()  # Go unmarshals null into an empty map.
    if not isinstance(document, dict):
        raise InvalidFilter(detail=f"expected a JSON object, not {_describe_json_type(document)}")
    return Filters({key: _values_of(key, values) for key, values in document.items()})


# ``1700000000`` or ``1700000000.123456789`` (what the docker CLI sends), optionally signed.
_UNIX_RE: Final = re.compile(r"([+-]?[0-9]+)(?:\.([0-9]+))?")
_RFC3339_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _fraction_to_ns(digits: str) -> int:
    # Scale to nanoseconds; digits beyond the ninth are truncated (as dockerd does).
    return int(digits[:9].ljust(9, "0"))


def _bad_timestamp(value: str) -> InvalidParameter:
    return InvalidParameter(
        f"invalid timestamp {value!r}: expected unix seconds such as 1700000000 or "
        "1700000000.123456789, or an RFC 3339 time such as 2006-01-02T15:04:05Z"
    )


def _parse_rfc3339(value: str, match: re.Match[str]) -> int:
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction, zulu, sign, off_h, off_m = match.group(7, 8, 9, 10, 11)
    if zulu:
        tz = UTC
    else:
        if int(off_h) > 23 or int(off_m) > 59:
            raise _bad_timestamp(value)
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        raise _bad_timestamp(value) from None
    # Exact integer arithmetic: no float rounding of the nanoseconds.
    delta = when - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    return seconds * _NS_PER_SECOND + (_fraction_to_ns(fraction) if fraction else 0)


def parse_timestamp(value: str | None, default_seconds: int) -> int:
    """Parse a ``since``/``until`` value into unix time in **nanoseconds**.

    Accepts what the docker CLI sends, unix seconds with an optional fraction of up to nine
    digits (``1700000000``, ``1700000000.5``, ``1700000000.123456789``), and RFC 3339 times
    with a ``Z`` or ``±hh:mm`` offset and optional fractional seconds. An empty value (or
    ``None``) gives ``default_seconds * 10**9``, so a caller passing ``-1`` tests for
    ``-1_000_000_000``. Anything else raises ``InvalidParameter`` naming the value.
    """
    if value is None or value == "":
        return default_seconds * _NS_PER_SECOND
    unix = _UNIX_RE.fullmatch(value)
    if unix is not None:
        seconds = int(unix.group(1))
        fraction = unix.group(2)
        nanos = _fraction_to_ns(fraction) if fraction else 0
        # "-1.5" is -1 s then +0.5 s in dockerd (time.Unix(-1, 500000000)); keep that.
        return seconds * _NS_PER_SECOND + nanos
    rfc = _RFC3339_RE.fullmatch(value)
    if rfc is not None:
        return _parse_rfc3339(value, rfc)
    raise _bad_timestamp(value)
