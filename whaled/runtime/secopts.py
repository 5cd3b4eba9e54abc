"""``--security-opt`` values (HostConfig.SecurityOpt), parsed with dockerd's rules (pure).

This host family has seccomp but neither AppArmor nor SELinux, so profile and label options
are refused with a clear 400 instead of being silently ignored. The two options that only ask
for *less* confinement (``apparmor=unconfined``, ``label=disable``) are accepted as no-ops:
without an LSM the container is already in that state, and compose files and test
frameworks commonly send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from whaled.errors import InvalidParameter

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityOptions:
    no_new_privileges: bool = False
    #: None: the default profile; ``"unconfined"``: no filter; otherwise a JSON profile.
    seccomp_profile: str | None = None
    #: ``systempaths=unconfined``: no masked or read-only /proc and /sys paths.
    unconfined_system_paths: bool = False


def _parse_bool(text: str) -> bool | None:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def parse_security_opts(opts: Sequence[str]) -> SecurityOptions:
    nnp = False
    seccomp: str | None = None
    unconfined_paths = False
    for opt in opts:
        if opt == "systempaths=unconfined":
            unconfined_paths = True
            continue
        if opt == "disable":  # dockerd's short form of label=disable
            continue
        key, sep, value = opt.partition("=")
        if not sep and key != "no-new-privileges":
            # dockerd still accepts the old "key:value" spelling.
            key, sep, value = opt.partition(":")
            if not sep:
                raise InvalidParameter(f'invalid --security-opt 1: "{opt}"')
        if key == "no-new-privileges":
            if not sep:
                nnp = True
                continue
            parsed = _parse_bool(value)
            if parsed is None:
                raise InvalidParameter(f'invalid --security-opt 2: "{opt}"')
            nnp = parsed
        elif key == "seccomp":
            if not value:
                raise InvalidParameter(f'invalid --security-opt 2: "{opt}"')
            seccomp = None if value == "builtin" else value
        elif key == "apparmor":
            if value != "unconfined":
                raise InvalidParameter(
                    f'invalid --security-opt "{opt}": AppArmor is not supported on this host'
                )
        elif key == "label":
            if value != "disable":
                raise InvalidParameter(
                    f'invalid --security-opt "{opt}": SELinux labels are not supported on this host'
                )
        else:
            raise InvalidParameter(f'invalid --security-opt 2: "{opt}"')
    return SecurityOptions(
        no_new_privileges=nnp, seccomp_profile=seccomp, unconfined_system_paths=unconfined_paths
    )
