"""Platforms: normalisation, the host's platform, matching an index's entries (pure).

Follows containerd's ``platforms`` package, which dockerd uses to pick from a manifest list:
``x86_64``/``x86-64`` → ``amd64``, ``aarch64`` → ``arm64`` (variant ``v8`` dropped when
normalised), ``armhf`` → ``arm/v7``, ``armel`` → ``arm/v6``, bare ``arm`` → ``arm/v7``,
``i386`` → ``386``. A host matches, best first: its own platform, then what it can also run
(``amd64/v3`` → ``amd64/v2``, ``amd64``, ``386``; ``arm64`` → ``arm/v8``, ... ``arm/v5``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from whaled.errors import InvalidParameter, NotFound


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        """containerd's ``platforms.Format``: ``linux/arm64/v8``, ``linux/amd64``."""
        out = f"{self.os or 'unknown'}/{self.architecture or 'unknown'}"
        return f"{out}/{self.variant}" if self.variant else out


#: containerd's ``isKnownArch`` (Go's GOARCH values).
KNOWN_ARCHITECTURES = frozenset(
    {
        "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
        "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
        "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
    }
)  # fmt: skip


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
        return "arm", variant
    return arch, variant


def normalize(p: Platform) -> Platform:
    arch, variant = _normalize_arch(p.architecture, p.variant)
    os_name = p.os.lower()
    if os_name == "macos":
        os_name = "darwin"
    return Platform(os=os_name, architecture=arch, variant=variant)


def parse_platform(spec: str) -> Platform:
    """``os[/arch[/variant]]`` or ``arch[/variant]`` (as ``--platform`` takes it), normalised.

    An empty or malformed specifier raises InvalidParameter with containerd's wording.
    """
    parts = spec.split("/")
    if not spec or any(not p for p in parts) or len(parts) > 3:
        raise InvalidParameter(f'"{spec}": invalid platform specifier')
    for part in parts:
        if not all(c.isalnum() or c in "_-" for c in part):
            raise InvalidParameter(
                f'"{part}": platform specifier component must match '
                f'"^[A-Za-z0-9_-]+$": invalid argument'
            )
    known_os = {"linux", "windows", "darwin", "freebsd", "macos", "netbsd", "openbsd", "solaris"}
    if len(parts) == 1:
        if parts[0].lower() in known_os:
            return normalize(
                Platform(
                    os=parts[0],
                    architecture=host_platform().architecture,
                    variant=host_platform().variant,
                )
            )
        # containerd is stricter with one component: an unknown one is no platform at all
        arch = normalize(Platform(os="linux", architecture=parts[0]))
        if arch.architecture not in KNOWN_ARCHITECTURES:
            raise InvalidParameter(
                f'"{spec}": unknown operating system or architecture: invalid argument'
            )
        return arch
    if len(parts) == 2:
        if parts[0].lower() in known_os:
            return normalize(Platform(os=parts[0], architecture=parts[1]))
        return normalize(Platform(os="linux", architecture=parts[0], variant=parts[1]))
    return normalize(Platform(os=parts[0], architecture=parts[1], variant=parts[2]))


def platform_from_machine(machine: str) -> Platform:
    """The platform of a Linux machine name (``uname -m``), with the variant a host reports
    (``arm64`` hosts are ``v8``, as containerd's ``DefaultSpec``)."""
    m = machine.lower()
    table = {
        "x86_64": ("amd64", ""),
        "amd64": ("amd64", ""),
        "aarch64": ("arm64", "v8"),
        "arm64": ("arm64", "v8"),
        "armv8l": ("arm", "v8"),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "armv5tel": ("arm", "v5"),
        "i386": ("386", ""),
        "i686": ("386", ""),
        "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""),
        "riscv64": ("riscv64", ""),
        "mips64": ("mips64", ""),
    }
    arch, variant = table.get(m, (m, ""))
    return Platform(os="linux", architecture=arch, variant=variant)


def host_platform() -> Platform:
    """This host's platform (not normalised: ``linux/arm64/v8`` on arm64, as dockerd prints)."""
    return platform_from_machine(os.uname().machine)


def compatible(p: Platform) -> list[Platform]:
    """What a host of platform ``p`` can run, best first (containerd's ``platformVector``)."""
    p = normalize(p)
    out = [p]
    if p.architecture == "amd64":
        level = _version(p.variant)
        if level is not None and level > 1:
            for lower in range(level - 1, 0, -1):
                out.append(
                    Platform(
                        os=p.os, architecture="amd64", variant="" if lower == 1 else f"v{lower}"
                    )
                )
        out.append(Platform(os=p.os, architecture="386"))
    elif p.architecture == "arm":
        level = _version(p.variant)
        if level is not None and level > 5:
            for lower in range(level - 1, 4, -1):
                out.append(Platform(os=p.os, architecture="arm", variant=f"v{lower}"))
    elif p.architecture == "arm64":
        out.extend(compatible(Platform(os=p.os, architecture="arm", variant=p.variant or "v8")))
    return out


def _version(variant: str) -> int | None:
    digits = variant[1:] if variant.startswith("v") else variant
    return int(digits) if digits.isdigit() else None


class NoMatchingManifest(NotFound):
    def __init__(self, wanted: Platform) -> None:
        super().__init__(f"no matching manifest for {wanted} in the manifest list entries")
        self.wanted = wanted


def select_index(candidates: Sequence[tuple[int, Platform | None]], wanted: Platform) -> int:
    """The position (first element of the chosen pair) of the best entry for ``wanted``.

    Entries without a platform never match; ties keep the index's order. Raises
    :class:`NoMatchingManifest` (dockerd's wording, naming ``wanted`` as given) if none fits.
    """
    order = {p: rank for rank, p in enumerate(compatible(wanted))}
    best: tuple[int, int] | None = None
    for position, (_key, platform) in enumerate(candidates):
        if platform is None:
            continue
        rank = order.get(normalize(platform))
        if rank is None:
            continue
        if best is None or (rank, position) < (best[0], best[1]):
            best = (rank, position)
    if best is None:
        raise NoMatchingManifest(wanted)
    return candidates[best[1]][0]


def matches_config(config_platform: Platform, wanted: Platform) -> bool:
    """Whether an image config's platform is one ``wanted`` can run."""
    return normalize(config_platform) in compatible(wanted)
