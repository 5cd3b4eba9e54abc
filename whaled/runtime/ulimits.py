"""Container ulimits: parsing, merging with the daemon's ``default-ulimits``, and the check
against what the host lets whaled grant (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from whaled.errors import InvalidParameter

#: Ulimit names Docker accepts (``RLIMIT_<NAME>`` in the OCI spec).
ULIMIT_NAMES = frozenset(
    {
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    }
)

#: RLIM_INFINITY as the OCI spec writes it (uint64). Docker writes it as -1.
RLIM_INFINITY = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Ulimit:
    """One ulimit as the Docker API carries it; -1 means unlimited."""

    name: str
    soft: int
    hard: int


def _is_infinite(value: int) -> bool:
    return value < 0 or value >= RLIM_INFINITY


def validate_ulimit(ulimit: Ulimit) -> Ulimit:
    if ulimit.name not in ULIMIT_NAMES:
        raise InvalidParameter(f"invalid ulimit type: {ulimit.name}")
    soft_inf, hard_inf = _is_infinite(ulimit.soft), _is_infinite(ulimit.hard)
    if (not hard_inf and soft_inf) or (not soft_inf and not hard_inf and ulimit.soft > ulimit.hard):
        raise InvalidParameter(
            "ulimit soft limit must be less than or equal to hard limit: "
            f"{ulimit.soft} > {ulimit.hard}"
        )
    return ulimit


def parse_ulimit(text: str) -> Ulimit:
    """``name=soft[:hard]`` (the ``--ulimit`` / ``--default-ulimit`` syntax)."""
    name, sep, limits = text.partition("=")
    if not sep:
        raise InvalidParameter(f"invalid ulimit argument: {text}")
    soft_text, _, hard_text = limits.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if hard_text else soft
    except ValueError:
        raise InvalidParameter(f"invalid ulimit argument: {text}") from None
    return validate_ulimit(Ulimit(name=name, soft=soft, hard=hard))


def merge_ulimits(container: Sequence[Ulimit], defaults: Iterable[Ulimit]) -> tuple[Ulimit, ...]:
    """The container's ulimits followed by the daemon defaults it does not set (the container
    wins per name). This is also what inspect shows as HostConfig.Ulimits."""
    names = {u.name for u in container}
    return (*container, *(u for u in defaults if u.name not in names))


def check_host_limits(ulimits: Iterable[Ulimit], host_hard: Mapping[str, int]) -> None:
    """Refuse ulimits the runtime could not set.

    ``host_hard`` maps a ulimit name to the hard limit whaled itself runs under, for the
    resources whaled cannot raise (it lacks CAP_SYS_RESOURCE); -1 means unlimited. Names not in
    the mapping are not checked. Asking for more fails with a 400 naming the ceiling, instead of
    an EPERM from deep inside the runtime at start.
    """
    for u in ulimits:
        ceiling = host_hard.get(u.name)
        if ceiling is None or _is_infinite(ceiling):
            continue
        for which, value in (("hard", u.hard), ("soft", u.soft)):
            if _is_infinite(value) or value > ceiling:
                shown = "unlimited" if _is_infinite(value) else str(value)
                raise InvalidParameter(
                    f"ulimit {u.name}: {which} limit {shown} is above this host's hard limit "
                    f"{ceiling}, which the daemon cannot raise; use at most {u.name}={ceiling}"
                )


def _oci_value(value: int) -> int:
    return RLIM_INFINITY if _is_infinite(value) else value


def to_oci_rlimits(ulimits: Iterable[Ulimit]) -> list[dict[str, object]]:
    """``process.rlimits`` of the OCI spec."""
    return [
        {"type": f"RLIMIT_{u.name.upper()}", "hard": _oci_value(u.hard), "soft": _oci_value(u.soft)}
        for u in (validate_ulimit(u) for u in ulimits)
    ]
