"""Finding external binaries (runc, crun, conmon, catatonit, tini) and asking their version.

Pure part: one parser per ``--version`` output format. I/O part: :func:`find_executable`
(a PATH search with extra directories) and :func:`probe_version` (runs ``<path> --version``
with a 2-second limit and kills the process group on timeout, so a stuck binary cannot hang
the daemon). Probing never raises for a missing or broken binary: the result carries an
``error`` string instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from whaled.osutil import spawn

PROBE_TIMEOUT = 2.0

# Searched after $PATH: a daemon started with a minimal PATH still finds runc in /usr/sbin,
# and Fedora-style hosts keep conmon and catatonit under libexec.
DEFAULT_EXTRA_DIRS: tuple[str, ...] = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/libexec/podman",
    "/usr/libexec/podman",
)

_UNKNOWN_COMMITS = frozenset({"", "unknown", "n/a", "none"})
_MAX_OUTPUT_IN_ERROR = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedVersion:
    """What a ``--version`` output says. ``details`` keeps the other ``key: value`` lines
    (runc's ``spec``, ``go``, ``libseccomp``; crun's ``rundir``, ``spec`` and its feature
    line under ``features``) in output order."""

    name: str | None = None
    version: str | None = None
    commit: str | None = None
    details: tuple[tuple[str, str], ...] = ()

    def detail(self, key: str) -> str | None:
        for k, v in self.details:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryVersion:
    """Result of probing one binary. ``path`` is None when it was not found; ``error`` is
    None on success and says what went wrong otherwise (``version`` may still be set when
    only part of the output was understood)."""

    name: str
    path: str | None
    version: str | None = None
    commit: str | None = None
    details: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def detail(self, key: str) -> str | None:
        for k, v in self.details:
            if k == key:
                return v
        return None


# --------------------------------------------------------------------------- pure parsers

_VERSION_LINE = re.compile(r"^\s*(?P<name>\S+)\s+version:?\s+(?P<version>\S+)(?P<rest>.*)$")
_KEY_VALUE_LINE = re.compile(r"^\s*(?P<key>[A-Za-z][\w .-]*?)\s*:\s*(?P<value>.*?)\s*$")
_GIT_SUFFIX = re.compile(r"^\s*-\s*git\.(?P<commit>[0-9A-Za-z]+)")


def _normalise_commit(commit: str | None) -> str | None:
    if commit is None or commit.strip().lower() in _UNKNOWN_COMMITS:
        return None
    return commit.strip()


def parse_version_output(text: str) -> ParsedVersion:
    """Parse the common ``<name> version <x>`` + ``key: value`` lines format.

    The first ``version`` line gives name and version; ``commit:`` gives the commit; other
    ``key: value`` lines go to ``details``; a line of ``+FEATURE -FEATURE`` words (crun) is
    stored under ``features``.
    """
    name: str | None = None
    version: str | None = None
    commit: str | None = None
    details: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if version is None:
            m = _VERSION_LINE.match(line)
            if m is not None:
                name, version = m.group("name"), m.group("version")
                git = _GIT_SUFFIX.match(m.group("rest"))
                if git is not None:
                    commit = git.group("commit")
                continue
        words = line.split()
        if words and all(w[0] in "+-" and len(w) > 1 for w in words):
            details.append(("features", " ".join(words)))
            continue
        kv = _KEY_VALUE_LINE.match(line)
        if kv is None:
            continue
        key, value = kv.group("key").lower(), kv.group("value")
        if key == "commit":
            commit = value
        else:
            details.append((key, value))
    return ParsedVersion(
        name=name, version=version, commit=_normalise_commit(commit), details=tuple(details)
    )


def parse_runc_version(text: str) -> ParsedVersion:
    """``runc --version``::

    runc version 1.1.5+ds1
    commit: 1.1.5+ds1-1+deb12u1
    spec: 1.0.2-dev
    go: go1.19.8
    libseccomp: 2.5.4
    """
    return parse_version_output(text)


def parse_crun_version(text: str) -> ParsedVersion:
    """``crun --version``::

    crun version 1.8.1
    commit: f8a096be060b22ccd3d5f3ebe44108517fbf6c30
    rundir: /run/crun
    spec: 1.0.0
    +SYSTEMD +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL
    """
    return parse_version_output(text)


def parse_conmon_version(text: str) -> ParsedVersion:
    """``conmon --version``: ``conmon version 2.1.6`` / ``commit: unknown`` (→ no commit)."""
    return parse_version_output(text)


def parse_tini_version(text: str) -> ParsedVersion:
    """``tini --version``: ``tini version 0.19.0`` (Debian) or
    ``tini version 0.19.0 - git.de40ad0`` (upstream builds; the commit is after ``git.``)."""
    return parse_version_output(text)


def parse_catatonit_version(text: str) -> ParsedVersion:
    """``catatonit --version``: catatonit poses as tini for Docker's sake and prints
    ``tini version 0.1.7_catatonit``; some builds print ``catatonit version 0.1.7``. Either
    way the result is named catatonit, version ``0.1.7``."""
    parsed = parse_version_output(text)
    if parsed.version is None:
        return parsed
    version = parsed.version.removesuffix("_catatonit")
    return ParsedVersion(
        name="catatonit", version=version, commit=parsed.commit, details=parsed.details
    )


PARSERS: Mapping[str, Callable[[str], ParsedVersion]] = {
    "runc": parse_runc_version,
    "crun": parse_crun_version,
    "conmon": parse_conmon_version,
    "tini": parse_tini_version,
    "docker-init": parse_tini_version,
    "catatonit": parse_catatonit_version,
}


def parser_for(name: str) -> Callable[[str], ParsedVersion]:
    """The parser for a binary name; the generic one for names not listed in PARSERS."""
    return PARSERS.get(name, parse_version_output)


def version_result(name: str, path: str, text: str) -> BinaryVersion:
    """Turn a successful run's output into a :class:`BinaryVersion` (pure)."""
    parsed = parser_for(name)(text)
    error = None
    if parsed.version is None and parsed.commit is None:
        error = f"unknown output format: {_shorten(text)}"
    return BinaryVersion(
        name=name,
        path=path,
        version=parsed.version,
        commit=parsed.commit,
        details=parsed.details,
        error=error,
    )


def _shorten(text: str) -> str:
    text = text.strip()
    if len(text) > _MAX_OUTPUT_IN_ERROR:
        return text[:_MAX_OUTPUT_IN_ERROR] + "..."
    return text


# --------------------------------------------------------------------------- I/O


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_executable(
    name: str,
    extra_dirs: Iterable[str] = DEFAULT_EXTRA_DIRS,
    *,
    search_path: str | None = None,
) -> str | None:
    """Absolute path of the executable ``name``, or None.

    A name containing ``/`` is checked as given (made absolute). Otherwise the directories
    of ``search_path`` (default ``$PATH``) are searched, then ``extra_dirs``. Symlinks are
    not resolved: the path returned is the one found.
    """
    if "/" in name:
        path = os.path.abspath(name)
        return path if _is_executable_file(path) else None
    if search_path is None:
        search_path = os.environ.get("PATH", "")
    seen: set[str] = set()
    for directory in [*search_path.split(os.pathsep), *extra_dirs]:
        if not directory or not os.path.isabs(directory) or directory in seen:
            continue
        seen.add(directory)
        candidate = os.path.join(directory, name)
        if _is_executable_file(candidate):
            return candidate
    return None


async def probe_version(
    path: str, *, name: str | None = None, timeout: float = PROBE_TIMEOUT
) -> BinaryVersion:
    """Run ``<path> --version`` and parse its output with the parser for ``name`` (default:
    the file name of ``path``). Returns within about ``timeout`` seconds plus one; never
    raises for a missing, non-executable, failing, hanging or chatty binary."""
    binary = name if name is not None else os.path.basename(path)
    try:
        # Popen (osutil.spawn): the loop's subprocess forks the whole daemon on uvloop
        returncode, out, err = await spawn.run(
            [path, "--version"], timeout=timeout, start_new_session=True
        )
    except TimeoutError:  # killed, with what it started (an OSError: caught first)
        return BinaryVersion(
            name=binary,
            path=path,
            error=f"{path} --version: timed out after {timeout:g}s",
        )
    except OSError as e:
        return BinaryVersion(name=binary, path=path, error=f"{path}: {e.strerror or e}")
    stdout = out.decode("utf-8", errors="replace")
    if returncode != 0:
        detail = _shorten(err.decode("utf-8", errors="replace") or stdout)
        message = f"{path} --version: exit status {returncode}"
        return BinaryVersion(
            name=binary, path=path, error=f"{message}: {detail}" if detail else message
        )
    return version_result(binary, path, stdout)


async def probe_binary(
    name: str,
    extra_dirs: Iterable[str] = DEFAULT_EXTRA_DIRS,
    *,
    timeout: float = PROBE_TIMEOUT,
) -> BinaryVersion:
    """:func:`find_executable` then :func:`probe_version`; a binary that is not found gives
    a result with ``path`` None and dockerd's wording in ``error``."""
    path = find_executable(name, extra_dirs)
    if path is None:
        return BinaryVersion(
            name=os.path.basename(name),
            path=None,
            error=f'exec: "{name}": executable file not found in $PATH',
        )
    return await probe_version(path, name=os.path.basename(name), timeout=timeout)
