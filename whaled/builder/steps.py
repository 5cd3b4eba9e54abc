"""What each instruction that changes only the image config does to it, and the
``created_by`` text a step leaves in the image history (the build cache's key too), in
dockerd's forms (``/bin/sh -c #(nop)  ENV A=1``). Pure."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from whaled.builder.dockerfile import Instruction
from whaled.builder.words import process_word, process_words
from whaled.errors import InvalidParameter

NOP = "/bin/sh -c #(nop) "
DEFAULT_SHELL = ["/bin/sh", "-c"]
_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


def go_list(words: Sequence[str]) -> str:
    """A string list as Go's ``%q`` of a slice prints it: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(w) for w in words) + "]"


def env_map(env: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in env:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def set_env(env: Sequence[str], key: str, value: str) -> list[str]:
    out = [e for e in env if e.partition("=")[0] != key]
    return [*out, f"{key}={value}"]


def key_values(inst: Instruction, env: Mapping[str, str], escape: str) -> list[tuple[str, str]]:
    """``ENV``/``LABEL``/``ARG``-style ``k=v k2="v 2"`` (or the old ``ENV k v w``)."""
    words = process_words(inst.rest, env, escape)
    if not words:
        raise InvalidParameter(f"{inst.cmd} requires at least one argument")
    if "=" not in words[0]:
        if inst.cmd == "ENV":
            key, _, value = inst.rest.strip().partition(" ")
            return [(key, process_word(value.strip(), env, escape))]
        if inst.cmd == "ARG":
            return [(words[0], "")]
        raise InvalidParameter(f"{inst.cmd} names can not be blank")
    out = []
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or not key:
            raise InvalidParameter(
                f"Syntax error - can't find = in {w!r}. Must be of the form: name=value"
            )
        out.append((key, value))
    return out


def exec_form(inst: Instruction, shell: Sequence[str]) -> list[str]:
    """CMD/ENTRYPOINT/RUN's command: the JSON form as is, the shell form through the
    image's SHELL."""
    if inst.json is not None:
        return list(inst.json)
    return [*shell, inst.rest]


def parse_duration_ns(text: str, what: str) -> int:
    total, number, unit = 0, "", ""
    for c in text + "\0":
        if c.isdigit() or c == ".":
            if unit:
                total += _unit(number, unit, text, what)
                number, unit = "", ""
            number += c
        elif c == "\0":
            break
        else:
            unit += c
    if number:
        total += _unit(number, unit or "s", text, what)
    return total


def _unit(number: str, unit: str, text: str, what: str) -> int:
    if unit not in _DURATION_UNITS:
        raise InvalidParameter(f"time: invalid duration {text!r} for {what}")
    return int(float(number) * _DURATION_UNITS[unit])


def apply(
    inst: Instruction,
    config: dict[str, Any],
    env: Mapping[str, str],
    escape: str,
    *,
    cmd_set: bool,
) -> tuple[dict[str, Any], str]:
    """The config after a config-only instruction, and its ``created_by``. ``env``:
    what substitution sees (the config's Env and the build args); ``cmd_set``: this stage
    set CMD already (ENTRYPOINT clears an inherited CMD only)."""
    c = dict(config)
    cmd = inst.cmd
    if cmd == "ENV":
        pairs = key_values(inst, env, escape)
        for key, value in pairs:
            c["Env"] = set_env(c.get("Env") or [], key, value)
        return c, NOP + " ENV " + " ".join(f"{k}={v}" for k, v in pairs)
    if cmd == "LABEL":
        pairs = key_values(inst, env, escape)
        c["Labels"] = {**(c.get("Labels") or {}), **dict(pairs)}
        return c, NOP + " LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
    if cmd == "MAINTAINER":
        return c, NOP + " MAINTAINER " + inst.rest
    if cmd == "WORKDIR":
        path = process_word(inst.rest, env, escape)
        if not path:
            raise InvalidParameter("WORKDIR requires exactly one argument")
        c["WorkingDir"] = posixpath.normpath(posixpath.join(c.get("WorkingDir") or "/", path))
        return c, NOP + "WORKDIR " + c["WorkingDir"]
    if cmd == "USER":
        c["User"] = process_word(inst.rest, env, escape)
        return c, NOP + " USER " + c["User"]
    if cmd in ("CMD", "ENTRYPOINT"):
        words = exec_form(inst, c.get("Shell") or DEFAULT_SHELL)
        if cmd == "CMD":
            c["Cmd"] = words
        else:
            c["Entrypoint"] = words
            if not cmd_set:
                c["Cmd"] = None
        return c, NOP + f" {cmd} {go_list(words)}"
    if cmd == "EXPOSE":
        ports = dict(c.get("ExposedPorts") or {})
        added = []
        for word in process_words(inst.rest, env, escape):
            port, _, proto = word.partition("/")
            proto = (proto or "tcp").lower()
            lo, _, hi = port.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise InvalidParameter(f"Invalid containerPort: {port}")
            for p in range(int(lo), int(hi or lo) + 1):
                ports[f"{p}/{proto}"] = {}
                added.append(f"{p}/{proto}")
        c["ExposedPorts"] = ports
        return c, NOP + " EXPOSE " + " ".join(sorted(added))
    if cmd == "VOLUME":
        paths = inst.json if inst.json is not None else process_words(inst.rest, env, escape)
        if not paths:
            raise InvalidParameter("VOLUME specified can not be an empty string")
        c["Volumes"] = {**(c.get("Volumes") or {}), **{p: {} for p in paths}}
        return c, NOP + " VOLUME " + go_list(paths)
    if cmd == "STOPSIGNAL":
        c["StopSignal"] = process_word(inst.rest, env, escape)
        return c, NOP + " STOPSIGNAL " + c["StopSignal"]
    if cmd == "SHELL":
        if inst.json is None or not inst.json:
            raise InvalidParameter("SHELL requires the arguments to be in JSON form")
        c["Shell"] = list(inst.json)
        return c, NOP + " SHELL " + go_list(inst.json)
    if cmd == "ONBUILD":
        trigger = inst.rest.strip()
        first = trigger.split(None, 1)[0].upper() if trigger else ""
        if first in ("ONBUILD", "FROM", "MAINTAINER"):
            raise InvalidParameter(f"{first} isn't allowed as an ONBUILD trigger")
        c["OnBuild"] = [*(c.get("OnBuild") or []), trigger]
        return c, NOP + " ONBUILD " + trigger
    if cmd == "HEALTHCHECK":
        return _healthcheck(inst, c)
    raise InvalidParameter(f"{cmd} is not a config instruction")


def _healthcheck(inst: Instruction, c: dict[str, Any]) -> tuple[dict[str, Any], str]:
    words = inst.rest.split(None, 1)
    kind = words[0].upper() if words else ""
    if kind == "NONE":
        if len(words) > 1 or inst.flags:
            raise InvalidParameter("HEALTHCHECK NONE takes no arguments")
        c["Healthcheck"] = {"Test": ["NONE"]}
        return c, NOP + ' HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}'
    if kind != "CMD" or len(words) < 2:
        raise InvalidParameter('Unknown type "' + kind + '" in HEALTHCHECK (try CMD)')
    rest = words[1]
    try:
        doc = json.loads(rest) if rest.startswith("[") else None
    except ValueError:
        doc = None
    test = ["CMD", *doc] if isinstance(doc, list) else ["CMD-SHELL", rest]
    hc: dict[str, Any] = {"Test": test}
    durations = (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    )
    for flag, key in durations:
        if flag in inst.flags:
            hc[key] = parse_duration_ns(inst.flags[flag], flag)
    if "retries" in inst.flags:
        if not inst.flags["retries"].isdigit():
            raise InvalidParameter(f"invalid retries: {inst.flags['retries']}")
        hc["Retries"] = int(inst.flags["retries"])
    c["Healthcheck"] = hc
    return c, NOP + " HEALTHCHECK " + go_list(test)
