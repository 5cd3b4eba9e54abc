"""``docker top``: the ``ps`` arguments and the parsing of its output (pure).

The rules are dockerd's (``daemon/top_unix.go``, checked against moby 23-27):

- ``ps_args`` defaults to ``-ef``. dockerd splits it on single spaces; whaled splits it with
  :mod:`shlex` (same result for what the docker CLI sends — it joins its arguments with one
  space — and quoted arguments keep their spaces). Unbalanced quotes are refused.
- Refused arguments: a column renamed to a header starting with ``PID`` (``-o uid=PID``) other
  than ``pid=PID…`` itself, because the PID column could no longer be found. The check is
  dockerd's regular expression ``\\s+([^\\s]*)=\\s*(PID[^\\s]*)`` with ASCII whitespace only;
  the message is ``specifying "uid=PID" is not allowed``.
- dockerd does **not** add ``-o pid`` when the arguments lack a PID column: parsing then fails
  with ``Couldn't find PID field in ps output`` (also for ``-o pid=`` or ``--no-headers``).
- The daemon runs ``ps <args> -q<pid,pid,…>`` on the host, and when that fails (some options,
  e.g. ``f``, do not combine with ``q``) ``ps <args>`` alone; when that fails too the error is
  ``ps: <first line of stderr>`` (a system error). :func:`ps_argvs` builds both argument
  lists.
- Parsing: titles are the header's fields (ASCII whitespace only: U+2003 does not separate);
  the first ``PID`` title is the PID column; rows whose PID is not the container's are dropped;
  a thread row (``-`` in the PID column, ``ps -L`` / ``m``) is kept when the process row before
  it was kept; the last column (CMD, COMMAND…) keeps its spaces — fields beyond the number of
  titles are joined to it with one space. An unparsable PID fails with
  ``Unexpected pid '<x>': …``.

dockerd returns its parse and validation errors unclassified, so they reach the client as
HTTP 500. whaled keeps the wording but answers 400 (:class:`~whaled.errors.InvalidParameter`)
for what the client's ``ps_args`` caused: refused arguments and ``ps`` rejecting them (issue
17: bad input is never a 5xx). An unparsable output of the default ``ps -ef`` stays a
:class:`~whaled.errors.SystemFailure`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Iterable

from whaled.errors import InvalidParameter, SystemFailure, WhaledError

DEFAULT_PS_ARGS = "-ef"

_ASCII_SPACE = "\t\n\f\r "
_FIELD_SPLIT = re.compile(f"[{re.escape(_ASCII_SPACE)}]+")
_PID_RENAME = re.compile(r"[\t\n\f\r ]+([^\t\n\f\r ]*)=[\t\n\f\r ]*(PID[^\t\n\f\r ]*)")


def fields_ascii(text: str) -> list[str]:
    """Go's ``strings.Fields`` restricted to ASCII whitespace (dockerd's ``fieldsASCII``)."""
    return [f for f in _FIELD_SPLIT.split(text) if f]


def validate_ps_args(args: str) -> list[str]:
    """The ``ps`` argument list for ``ps_args`` (empty → ``-ef``), or
    :class:`InvalidParameter` (dockerd's wording) when dockerd would refuse it."""
    if not args:
        args = DEFAULT_PS_ARGS
    for match in _PID_RENAME.finditer(args):
        key, value = match.group(1), match.group(2)
        if key != "pid":
            raise InvalidParameter(f'specifying "{key}={value}" is not allowed')
    try:
        return shlex.split(args)
    except ValueError as e:
        raise InvalidParameter(f"invalid ps arguments {args!r}: {e}") from None


def ps_pids_arg(pids: Iterable[int]) -> str:
    """``-q1,2,3``: restricts ``ps`` to the container's processes."""
    return "-q" + ",".join(str(p) for p in pids)


def ps_argvs(args: list[str], pids: Iterable[int], ps: str = "ps") -> tuple[list[str], list[str]]:
    """The command to try first and the one to fall back to when it fails."""
    return [ps, *args, ps_pids_arg(pids)], [ps, *args]


def ps_error(stderr: str, fallback: str, *, client_args: bool = False) -> WhaledError:
    """The error when both ``ps`` runs failed: ``ps: <first stderr line>`` (``fallback`` —
    e.g. "exit status 1" — when ``ps`` said nothing). With ``client_args`` (the client chose
    the arguments) it is the client's error, an :class:`InvalidParameter`."""
    first = stderr.split("\n", 1)[0]
    if client_args:
        return InvalidParameter(f"ps: {first or fallback}")
    return SystemFailure(f"ps: {first or fallback}")


def _row(fields: list[str], columns: int) -> list[str]:
    return [*fields[: columns - 1], " ".join(fields[columns - 1 :])]


def _go_atoi_error(text: str) -> str:
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'strconv.Atoi: parsing "{quoted}": invalid syntax'


def parse_ps(
    output: str, pids: Collection[int], ps_args: str = DEFAULT_PS_ARGS
) -> tuple[list[str], list[list[str]]]:
    """``(Titles, Processes)`` of ``ps`` output restricted to ``pids`` (the container's).

    ``ps_args`` does not change the parsing (dockerd's rules are the same for every argument
    list); it is accepted so callers can pass what they ran.
    """
    del ps_args
    lines = output.split("\n")
    titles = fields_ascii(lines[0])
    try:
        pid_index = titles.index("PID")
    except ValueError:
        raise SystemFailure("Couldn't find PID field in ps output") from None
    wanted = set(pids)
    processes: list[list[str]] = []
    previous_kept = False
    for line in lines[1:]:
        if not line:
            continue
        fields = fields_ascii(line)
        if not fields:
            continue
        if pid_index >= len(fields):
            raise SystemFailure(f"Unexpected ps output line {line!r}")
        value = fields[pid_index]
        if value == "-":
            if previous_kept:
                processes.append(_row(fields, len(titles)))
            continue
        if not value.isascii() or not re.fullmatch(r"[+-]?[0-9]+", value):
            raise SystemFailure(f"Unexpected pid '{value}': {_go_atoi_error(value)}")
        if int(value) in wanted:
            previous_kept = True
            processes.append(_row(fields, len(titles)))
        else:
            previous_kept = False
    return titles, processes
