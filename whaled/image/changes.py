"""Dockerfile-style ``changes`` for ``docker import`` / ``docker commit`` (pure).

Accepted instructions (dockerd's ``validCommitCommands``): CMD, ENTRYPOINT, ENV, EXPOSE,
HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR. Exec (JSON) and shell forms,
``key=value`` and legacy ``key value`` forms, quotes, backslash escapes, line continuations
and ``$VAR`` / ``${VAR}`` / ``${VAR:-x}`` / ``${VAR:+x}`` expansion from the image's Env.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from whaled.errors import InvalidParameter

VALID_COMMANDS = frozenset(
    {
        "cmd",
        "entrypoint",
        "env",
        "expose",
        "healthcheck",
        "label",
        "onbuild",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    }
)


def empty_container_config() -> dict[str, Any]:
    """The ``Config`` dockerd writes for an image built from an empty container config."""
    return {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": None,
        "Image": "",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": None,
    }


def split_lines(changes: Sequence[str]) -> list[str]:
    """Logical instruction lines: comments/blank lines dropped, ``\\`` continuations joined."""
    out: list[str] = []
    pending = ""
    for change in changes:
        for line in change.splitlines():
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1]
                continue
            out.append(pending + stripped)
            pending = ""
    if pending.strip():
        out.append(pending)
    return out


# --------------------------------------------------------------------------- word lexing


def _expand_var(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """Expand the variable starting at ``text[i] == '$'``; return (value, next index)."""
    if i + 1 >= len(text):
        return "$", i + 1
    nxt = text[i + 1]
    if nxt == "{":
        end = text.find("}", i + 2)
        if end < 0:
            raise InvalidParameter(f"missing '}}' in {text!r}")
        body = text[i + 2 : end]
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?$", body, re.DOTALL)
        if m is None:
            raise InvalidParameter(f"bad substitution in {text!r}")
        name, op, word = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name, "")
        if op == "-":
            return (value if value else word), end + 1
        if op == "+":
            return (word if value else ""), end + 1
        return value, end + 1
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :])
    if m is None:
        return "$", i + 1
    return env.get(m.group(0), ""), i + 1 + m.end()


def words(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Split on unquoted whitespace, remove quotes, process escapes and (if env) ``$VAR``."""
    out: list[str] = []
    cur: list[str] = []
    in_word = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            if in_word:
                out.append("".join(cur))
                cur = []
                in_word = False
            i += 1
            continue
        in_word = True
        if c == "\\" and i + 1 < n:
            cur.append(text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise InvalidParameter(
                    "unexpected end of statement while looking for matching single-quote in "
                    f"{text!r}"
                )
            cur.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$':
                    cur.append(text[i + 1])
                    i += 2
                elif text[i] == "$" and env is not None:
                    value, i = _expand_var(text, i, env)
                    cur.append(value)
                else:
                    cur.append(text[i])
                    i += 1
            if i >= n:
                raise InvalidParameter(
                    "unexpected end of statement while looking for matching double-quote in "
                    f"{text!r}"
                )
            i += 1
        elif c == "$" and env is not None:
            value, i = _expand_var(text, i, env)
            cur.append(value)
        else:
            cur.append(c)
            i += 1
    if in_word:
        out.append("".join(cur))
    return out


def _json_list(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _env_map(cfg: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in cfg.get("Env") or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def _name_values(instr: str, rest: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    if not rest:
        raise InvalidParameter(f"{instr} requires at least one argument")
    raw_words = words(rest)
    if raw_words and "=" not in raw_words[0]:
        # Legacy "KEY value with spaces" form.
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise InvalidParameter(f"{instr} must have two arguments")
        value = " ".join(words(parts[1], env))
        return [(parts[0], value)]
    pairs: list[tuple[str, str]] = []
    for word in words(rest, env):
        key, sep, value = word.partition("=")
        if not sep:
            raise InvalidParameter(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        if not key:
            raise InvalidParameter(f"{instr} names can not be blank")
        pairs.append((key, value))
    return pairs


def _parse_port(spec: str) -> list[str]:
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidParameter(f"invalid proto: {proto}")
    if ":" in port:
        raise InvalidParameter(f"invalid containerPort: {spec}")
    lo_s, dash, hi_s = port.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
    except ValueError:
        raise InvalidParameter(f"invalid containerPort: {port}") from None
    if not (0 < lo <= 65535 and 0 < hi <= 65535) or hi < lo:
        raise InvalidParameter(f"invalid containerPort: {port}")
    return [f"{p}/{proto}" for p in range(lo, hi + 1)]


def _check_signal(value: str) -> str:
    name = value.upper()
    if name.isdigit():
        if 0 < int(name) <= 64:
            return value
    else:
        if not name.startswith("SIG"):
            name = "SIG" + name
        if hasattr(signal.Signals, name) or re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
            return value
    raise InvalidParameter(f"Invalid signal: {value}")


_DURATION_FLAGS = {
    "interval": "Interval",
    "timeout": "Timeout",
    "start-period": "StartPeriod",
    "start-interval": "StartInterval",
}


def _healthcheck(rest: str) -> dict[str, Any]:
    from whaled.image.filters import parse_go_duration

    if rest.strip().upper() == "NONE":
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        name, _, value = flag[2:].partition("=")
        if name in _DURATION_FLAGS:
            secs = parse_go_duration(value)
            if secs is None or secs < 0:
                raise InvalidParameter(f"invalid duration for --{name}: {value!r}")
            hc[_DURATION_FLAGS[name]] = int(secs * 1_000_000_000)
        elif name == "retries":
            try:
                hc["Retries"] = int(value)
            except ValueError:
                raise InvalidParameter(f"invalid --retries: {value!r}") from None
        else:
            raise InvalidParameter(f"Unknown flag: {name}")
    instr, _, cmd = rest.partition(" ")
    if instr.upper() != "CMD":
        raise InvalidParameter(f"Unknown type {instr!r} in HEALTHCHECK (try CMD)")
    cmd = cmd.strip()
    exec_form = _json_list(cmd)
    if exec_form is not None:
        hc["Test"] = ["CMD", *exec_form]
    else:
        hc["Test"] = ["CMD-SHELL", cmd]
    return hc


def apply_changes(config: Mapping[str, Any] | None, changes: Sequence[str]) -> dict[str, Any]:
    """A new container config: ``config`` (or the empty one) with ``changes`` applied."""
    cfg: dict[str, Any] = copy.deepcopy(dict(config)) if config else empty_container_config()
    cmd_set = False
    for line in split_lines(changes):
        instr_raw, _, rest = line.partition(" ")
        instr_raw = instr_raw.strip()
        rest = rest.strip()
        instr = instr_raw.lower()
        if instr not in VALID_COMMANDS:
            raise InvalidParameter(f"{instr} is not a valid change command")
        env = _env_map(cfg)
        upper = instr.upper()
        if instr in ("cmd", "entrypoint"):
            exec_form = _json_list(rest)
            if exec_form is not None:
                value: list[str] | None = exec_form
            elif rest:
                value = ["/bin/sh", "-c", rest]
            else:
                value = None if instr == "entrypoint" else []
            if instr == "cmd":
                cfg["Cmd"] = value
                cmd_set = True
            else:
                cfg["Entrypoint"] = value
                if not cmd_set:
                    cfg["Cmd"] = None
        elif instr == "env":
            current = list(cfg.get("Env") or [])
            for key, val in _name_values(upper, rest, env):
                current = [e for e in current if e.partition("=")[0] != key]
                current.append(f"{key}={val}")
                env[key] = val
            cfg["Env"] = current
        elif instr == "label":
            labels = dict(cfg.get("Labels") or {})
            for key, val in _name_values(upper, rest, env):
                labels[key] = val
            cfg["Labels"] = labels
        elif instr == "expose":
            specs = words(rest, env)
            if not specs:
                raise InvalidParameter("EXPOSE requires at least one argument")
            ports = dict(cfg.get("ExposedPorts") or {})
            for spec in specs:
                for p in _parse_port(spec):
                    ports[p] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "volume":
            exec_form = _json_list(rest)
            vols = exec_form if exec_form is not None else words(rest, env)
            if not vols:
                raise InvalidParameter("VOLUME requires at least one argument")
            volumes = dict(cfg.get("Volumes") or {})
            for v in vols:
                v = v.strip()
                if not v:
                    raise InvalidParameter("VOLUME specified can not be an empty string")
                volumes[v] = {}
            cfg["Volumes"] = volumes
        elif instr == "workdir":
            w = words(rest, env)
            if len(w) != 1:
                raise InvalidParameter("WORKDIR requires exactly one argument")
            current_wd = cfg.get("WorkingDir") or "/"
            cfg["WorkingDir"] = posixpath.normpath(posixpath.join(current_wd, w[0]))
        elif instr == "user":
            w = words(rest, env)
            if len(w) != 1:
                raise InvalidParameter("USER requires exactly one argument")
            cfg["User"] = w[0]
        elif instr == "stopsignal":
            w = words(rest, env)
            if len(w) != 1:
                raise InvalidParameter("STOPSIGNAL requires exactly one argument")
            cfg["StopSignal"] = _check_signal(w[0])
        elif instr == "healthcheck":
            if not rest:
                raise InvalidParameter("HEALTHCHECK requires an argument")
            cfg["Healthcheck"] = _healthcheck(rest)
        elif instr == "onbuild":
            if not rest:
                raise InvalidParameter("ONBUILD requires at least one argument")
            trigger = rest.split(None, 1)[0].upper()
            if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
                raise InvalidParameter(f"{trigger} isn't allowed as an ONBUILD trigger")
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
    return cfg
