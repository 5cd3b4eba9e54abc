"""Pure helpers for image list / prune filters (dockerd's ``filters.Args`` semantics)."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping, Sequence

from whaled.errors import InvalidParameter
from whaled.regexp import Regexp, compile_linear

Filters = Mapping[str, Sequence[str]]


def validate(filters: Filters, accepted: Iterable[str]) -> None:
    allowed = set(accepted)
    for key in filters:
        if key not in allowed:
            raise InvalidParameter(f"invalid filter '{key}'")


def get_bool(filters: Filters, key: str) -> bool | None:
    """``true``/``1`` → True, ``false``/``0`` → False, absent → None, else 400."""
    values = list(filters.get(key, ()))
    if not values:
        return None
    lowered = {v.lower() for v in values}
    if lowered <= {"true", "1"}:
        return True
    if lowered <= {"false", "0"}:
        return False
    raise InvalidParameter(f"invalid filter '{key}={values[0]}'")


def match_kv_list(values: Sequence[str], labels: Mapping[str, str] | None) -> bool:
    """Every ``key`` / ``key=value`` in ``values`` must be present in ``labels``."""
    if not values:
        return True
    if not labels:
        return False
    for value in values:
        key, sep, want = value.partition("=")
        if key not in labels:
            return False
        if sep and labels[key] != want:
            return False
    return True


def match_labels(filters: Filters, labels: Mapping[str, str] | None) -> bool:
    """Prune's ``label`` / ``label!`` semantics."""
    if not match_kv_list(list(filters.get("label", ())), labels):
        return False
    negated = list(filters.get("label!", ()))
    return not negated or not match_kv_list(negated, labels)


# --------------------------------------------------------------------- Go path.Match


def _class(ranges: list[tuple[str, str]], *, negate: bool) -> str:
    """A class of ``ranges`` that never matches ``/`` (RE2 has no lookahead to subtract it)."""
    if negate:
        return "[^/" + "".join(_range(lo, hi) for lo, hi in ranges) + "]"
    kept: list[tuple[str, str]] = []
    for lo, hi in ranges:
        if lo <= "/" <= hi:  # split around it: "." and "0" are its neighbours
            kept += [r for r in ((lo, "."), ("0", hi)) if r[0] <= r[1]]
        else:
            kept.append((lo, hi))
    if not kept:
        return r"[^\x00-\x{10FFFF}]"  # matches nothing
    return "[" + "".join(_range(lo, hi) for lo, hi in kept) + "]"


def _range(lo: str, hi: str) -> str:
    return re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}"


def _translate_go_pattern(pattern: str) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                raise InvalidParameter("syntax error in pattern")
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            negate = False
            if j < n and pattern[j] == "^":
                negate = True
                j += 1
            ranges: list[tuple[str, str]] = []
            first = True
            while True:
                if j >= n:
                    raise InvalidParameter("syntax error in pattern")
                ch = pattern[j]
                if ch == "]" and not first:
                    break
                first = False
                if ch == "\\":
                    j += 1
                    if j >= n:
                        raise InvalidParameter("syntax error in pattern")
                    ch = pattern[j]
                lo = ch
                j += 1
                if j + 1 < n and pattern[j] == "-" and pattern[j + 1] != "]":
                    hi = pattern[j + 1]
                    if hi == "\\":
                        if j + 2 >= n:
                            raise InvalidParameter("syntax error in pattern")
                        hi = pattern[j + 2]
                        j += 1
                    if hi < lo:
                        raise InvalidParameter("syntax error in pattern")
                    ranges.append((lo, hi))
                    j += 2
                else:
                    ranges.append((lo, lo))
            out.append(_class(ranges, negate=negate))
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def go_path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` never match ``/``. Matched in linear time
    (:mod:`whaled.regexp`): a pattern of many ``*`` cannot make it hang."""
    return _go_pattern(pattern).match(name) is not None


@functools.lru_cache(maxsize=64)
def _go_pattern(pattern: str) -> Regexp:
    return compile_linear(_translate_go_pattern(pattern))


# --------------------------------------------------------------------- time values

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(value: str) -> float | None:
    """Seconds of a Go duration (``1h30m``, ``-5s``), or None if it is not one."""
    s = value
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        return None
    pos = 0
    total = 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        return None
    return sign * total


def parse_rfc3339(value: str) -> float:
    """Unix time of an RFC 3339 timestamp with any number of fractional digits."""
    m = re.match(
        r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?$",
        value.strip(),
    )
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    date, clock, frac, tz = m.groups()
    if clock.count(":") == 1:
        clock += ":00"
    tz = tz or "Z"
    tz = "+00:00" if tz in ("Z", "z") else (tz if ":" in tz else tz[:3] + ":" + tz[3:])
    base = dt.datetime.fromisoformat(f"{date}T{clock}{tz}")
    return base.timestamp() + (float(frac) if frac else 0.0)


def parse_timestamp(value: str, now: float) -> float:
    """dockerd's ``GetTimestamp``: a duration before ``now``, a date/time, or Unix seconds."""
    d = parse_go_duration(value)
    if d is not None:
        return now - d
    if re.match(r"^-?\d+(\.\d+)?$", value):
        return float(value)
    try:
        if re.match(r"^\d{4}-\d{2}-\d{2}$", value):
            return parse_rfc3339(value + "T00:00:00")
        return parse_rfc3339(value)
    except ValueError:
        raise InvalidParameter(f"failed to parse value as time or duration: {value!r}") from None


def format_rfc3339_nano(ts: float) -> str:
    """``2024-01-02T03:04:05.123456789Z`` (trailing zeros trimmed, like Go)."""
    whole = int(ts)
    nanos = round((ts - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole += 1
        nanos -= 1_000_000_000
    base = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        base += "." + f"{nanos:09d}".rstrip("0")
    return base + "Z"
