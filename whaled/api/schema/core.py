"""Request bodies decoded like dockerd's Go ``encoding/json``, checked against a typed table.

``decode_body(raw, schema)`` turns the bytes of a request body into a plain dict whose keys
are dockerd's canonical field names and whose values have the declared types, or raises
``InvalidParameter`` naming the field. The rules are Go's where clients rely on them:

- keys match a field exactly, else case-insensitively (Go's ``encoding/json``); the last
  key that matches a field wins; unknown keys are ignored (and not kept);
- ``null`` leaves a field unset (kept as ``None`` for pointer-like fields: lists, maps,
  structs and the ``nullable`` scalars such as ``StopTimeout`` or ``PidsLimit``);
- a value of the wrong type is a 400 in Go's wording, ``json: cannot unmarshal number into
  Go struct field ContainerConfigWrapper.Cmd of type string``; integers are range-checked
  for their Go type (``2**63`` does not fit an int64; ``1.5`` is not an integer).

And what Go accepts but a container cannot use is refused here, before it is stored:
``NaN``/``Infinity`` and numbers that overflow to infinity, NUL bytes in strings, strings
longer than the kernel takes for one argument, nesting deeper than ``MAX_DEPTH``.

Pure: no I/O. The per-resource tables are in sibling modules (``containers``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from whaled.errors import InvalidParameter

#: Deepest nesting of arrays and objects accepted (Docker bodies nest a few levels).
MAX_DEPTH = 64
#: Longest string accepted: the kernel's limit for one argument or environment string
#: (MAX_ARG_STRLEN), which any string that ends up in a container must fit.
MAX_STRING = 128 * 1024

_SPECIAL_RE = re.compile(rb'[\[\]{}"\\]')


class BodyError(InvalidParameter):
    """A request body that cannot be decoded or does not fit the schema (400)."""


@dataclass(frozen=True, slots=True)
class _NonFinite:
    """A number literal that overflows a float64 (kept to be named in the error)."""

    text: str


def _reject_constant(name: str) -> Any:
    first = name.lstrip("-")[:1]
    raise BodyError(f"invalid JSON: invalid character '{first}' looking for beginning of value")


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _check_depth(raw: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the parser recurses into it (one linear
    pass over the bytes that matter: brackets, quotes and escapes)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    depth = 0
    in_string = False
    escaped_at = -1  # the byte after a backslash in a string is not special
    for m in _SPECIAL_RE.finditer(raw):
        at, byte = m.start(), m.group()
        if at == escaped_at:
            continue
        if in_string:
            if byte == b"\\":
                escaped_at = at + 1
            elif byte == b'"':
                in_string = False
        elif byte == b'"':
            in_string = True
        elif byte in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise BodyError(f"invalid JSON: exceeded max depth of {MAX_DEPTH}")
        elif byte in (b"]", b"}"):
            depth -= 1


#: ``\uD800``-``\uDFFF`` escapes: Python keeps an unpaired one as a lone surrogate, which
#: no encoder can write; Go's decoder turns it into U+FFFD.
_SURROGATE_ESCAPE_RE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(value: Any) -> Any:
    """``value`` with every unpaired surrogate in its strings (keys too) replaced by U+FFFD,
    as Go's ``encoding/json`` decodes them (paired ones are one character already)."""
    if isinstance(value, str):
        return _LONE_SURROGATE_RE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw`` (400 for what is not JSON, or too deep)."""
    _check_depth(raw)
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_parse_float)
        if _SURROGATE_ESCAPE_RE.search(raw):
            value = _replace_lone_surrogates(value)
        return value
    except BodyError:
        raise
    except RecursionError:
        raise BodyError(f"invalid JSON: exceeded max depth of {MAX_DEPTH}") from None
    except ValueError as e:  # includes JSONDecodeError and UnicodeDecodeError
        raise BodyError(f"invalid JSON: {e}") from None


# ------------------------------------------------------------------ types


@dataclass(frozen=True, slots=True)
class Ctx:
    """Where a value is: the top-level Go struct and the dotted field path."""

    struct: str
    path: str

    def at(self, name: str) -> Ctx:
        return Ctx(self.struct, f"{self.path}.{name}" if self.path else name)

    def type_error(self, value: Any, go_type: str, *, literal: bool = False) -> BodyError:
        """Go's UnmarshalTypeError; ``literal``: name the number (a numeric target it does
        not fit), as Go does."""
        where = f"Go struct field {self.struct}.{self.path}" if self.path else "Go value"
        return BodyError(
            f"json: cannot unmarshal {_json_kind(value, literal)} into {where} of type {go_type}"
        )

    def value_error(self, reason: str) -> BodyError:
        return BodyError(f"invalid value for {self.path or self.struct}: {reason}")


def _json_kind(value: Any, literal: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if not literal and isinstance(value, int | float | _NonFinite):
        return "number"
    if isinstance(value, int):
        return f"number {value}"
    if isinstance(value, _NonFinite):
        return f"number {value.text}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, list):
        return "array"
    return "object"


class Type(Protocol):
    """A field type: checks a decoded JSON value (never ``None``) and returns it normalised."""

    @property
    def go(self) -> str: ...

    def check(self, value: Any, ctx: Ctx) -> Any: ...


def _check_text(text: str, ctx: Ctx, max_len: int) -> str:
    if "\x00" in text:
        raise ctx.value_error("strings cannot contain a NUL byte")
    if len(text) > max_len:
        raise ctx.value_error(f"string longer than {max_len} characters")
    return text


@dataclass(frozen=True, slots=True)
class Str:
    go: str = "string"
    max_len: int = MAX_STRING

    def check(self, value: Any, ctx: Ctx) -> Any:
        if not isinstance(value, str):
            raise ctx.type_error(value, self.go)
        return _check_text(value, ctx, self.max_len)


@dataclass(frozen=True, slots=True)
class Int:
    go: str = "int64"
    low: int = -(2**63)
    high: int = 2**63 - 1

    def check(self, value: Any, ctx: Ctx) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | _NonFinite):
            raise ctx.type_error(value, self.go)
        if not isinstance(value, int) or not self.low <= value <= self.high:
            raise ctx.type_error(value, self.go, literal=True)
        return value


INT64 = Int()
INT = Int(go="int")
UINT16 = Int(go="uint16", low=0, high=2**16 - 1)
UINT32 = Int(go="uint32", low=0, high=2**32 - 1)
UINT64 = Int(go="uint64", low=0, high=2**64 - 1)
DURATION = Int(go="time.Duration")
STR = Str()


@dataclass(frozen=True, slots=True)
class Bool:
    go: str = "bool"

    def check(self, value: Any, ctx: Ctx) -> Any:
        if not isinstance(value, bool):
            raise ctx.type_error(value, self.go)
        return value


BOOL = Bool()


@dataclass(frozen=True, slots=True)
class Float:
    go: str = "float64"

    def check(self, value: Any, ctx: Ctx) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | _NonFinite):
            raise ctx.type_error(value, self.go)
        if isinstance(value, _NonFinite):
            raise ctx.type_error(value, self.go, literal=True)
        return value


@dataclass(frozen=True, slots=True)
class List:
    """A JSON array of ``item`` (Go slice); ``null`` items are the item's zero value in Go,
    which for strings would silently become ``""``: they are refused instead."""

    item: Type
    go_name: str = ""
    #: Go's strslice.StrSlice: a single string is a list of one.
    or_single: bool = False
    #: A Go array of this length: longer input is cut, shorter padded with zero items.
    length: int | None = None

    @property
    def go(self) -> str:
        return self.go_name or f"[]{self.item.go}"

    def check(self, value: Any, ctx: Ctx) -> Any:
        if self.or_single and isinstance(value, str):
            return [self.item.check(value, ctx)]
        if not isinstance(value, list):
            raise ctx.type_error(value, self.go)
        out = []
        for v in value:
            if v is None:
                raise ctx.type_error(v, self.item.go)
            out.append(self.item.check(v, ctx))
        if self.length is not None:
            out = (out + [0] * self.length)[: self.length]
        return out


@dataclass(frozen=True, slots=True)
class Map:
    """A JSON object with free keys (Go map[string]T)."""

    value: Type
    go_name: str = ""
    max_key_len: int = MAX_STRING

    @property
    def go(self) -> str:
        return self.go_name or f"map[string]{self.value.go}"

    def check(self, value: Any, ctx: Ctx) -> Any:
        if not isinstance(value, dict):
            raise ctx.type_error(value, self.go)
        out: dict[str, Any] = {}
        for k, v in value.items():
            _check_text(k, ctx, self.max_key_len)
            out[k] = None if v is None else self.value.check(v, ctx)
        return out


@dataclass(frozen=True, slots=True)
class Empty:
    """Go ``struct {}``: the value of a set-like map (``{"/data": {}}``)."""

    go: str = "struct {}"

    def check(self, value: Any, ctx: Ctx) -> Any:
        if not isinstance(value, dict):
            raise ctx.type_error(value, self.go)
        return {}


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # dockerd's canonical (JSON) name
    type: Type
    #: Go pointer / nil-able: ``null`` is kept as ``None`` instead of leaving the field out.
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Struct:
    """A Go struct: a table of fields matched by name like ``encoding/json``."""

    go: str
    fields: Sequence[Field]
    _exact: Mapping[str, Field] = field(init=False, repr=False, compare=False)
    _folded: Mapping[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_exact", {f.name: f for f in self.fields})
        folded: dict[str, Field] = {}
        for f in self.fields:
            folded.setdefault(f.name.casefold(), f)
        object.__setattr__(self, "_folded", folded)

    def field_for(self, key: str) -> Field | None:
        """Go's rule: an exact match first, else a case-insensitive one."""
        return self._exact.get(key) or self._folded.get(key.casefold())

    def check(self, value: Any, ctx: Ctx) -> Any:
        if not isinstance(value, dict):
            raise ctx.type_error(value, self.go)
        out: dict[str, Any] = {}
        for key, v in value.items():
            f = self.field_for(key)
            if f is None:
                continue  # unknown keys are ignored, as Go does
            if v is None:
                if f.nullable or not _is_scalar(f.type):
                    out[f.name] = None
                else:
                    out.pop(f.name, None)
                continue
            out[f.name] = f.type.check(v, ctx.at(f.name))
        return out


def _is_scalar(t: Type) -> bool:
    return isinstance(t, Str | Int | Bool | Float)


@dataclass(frozen=True, slots=True)
class Body:
    """The schema of one request body: its top-level struct and the error prefix dockerd
    puts before a decoding error on that route."""

    struct: Struct
    prefix: str = "invalid JSON: "


def decode_body(raw: bytes, body: Body, *, required: bool = True) -> dict[str, Any]:
    """``raw`` decoded and checked against ``body`` (see the module doc); an empty body is
    ``{}`` unless ``required``."""
    if not raw.strip():
        if required:
            raise BodyError("invalid JSON: got EOF while reading request body")
        return {}
    return check_value(parse_json(raw), body)


def check_value(value: Any, body: Body) -> dict[str, Any]:
    """An already parsed JSON value checked against ``body``."""
    if value is None:
        return {}
    try:
        out: dict[str, Any] = body.struct.check(value, Ctx(body.struct.go, ""))
    except BodyError as e:
        if e.message.startswith("invalid JSON: "):
            raise
        raise BodyError(body.prefix + e.message) from None
    return out
