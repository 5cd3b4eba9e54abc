"""Log driver configuration (``HostConfig.LogConfig``, daemon ``log-driver``/``log-opts``),
validated like dockerd (pure).

Every driver whaled accepts stores the CRI ("k8s-file") file conmon writes; the driver name
only decides the rotation defaults and which options are allowed:

- ``json-file`` (dockerd's default) and ``k8s-file`` (podman's name for the same storage):
  no rotation unless ``max-size`` is set; ``max-file`` defaults to 1.
- ``local``: dockerd's defaults, 20 MiB per file and 5 files (dockerd also compresses rotated
  files by default; whaled does not compress yet, so ``local`` keeps them plain).
- ``none``: no log file; reading logs fails (``check_readable``).

Sizes follow dockerd: ``max-size`` is parsed like go-units' ``FromHumanSize`` (decimal:
``10k`` = 10000 bytes, ``1m`` = 1000000), ``max-buffer-size`` like ``RAMInBytes`` (binary).
dockerd accepts ``max-file`` without ``max-size`` (the files then never rotate) and so does
whaled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from whaled.errors import InvalidParameter, Unsupported

DRIVERS = ("json-file", "k8s-file", "local", "none")
DEFAULT_DRIVER = "json-file"

# Options dockerd handles for every driver (``logger.ValidateLogOpts``).
_BUILTIN_OPTS = frozenset({"mode", "max-buffer-size"})
_MODES = ("blocking", "non-blocking", "")
_FILE_OPTS = frozenset(
    {"max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag"}
)
_LOCAL_MAX_SIZE = 20 * 1024 * 1024
_LOCAL_MAX_FILE = 5

_DECIMAL = 1000
_BINARY = 1024
_SIZE = re.compile(r"^([0-9.]+) ?([a-zA-Z]*)$")
_UNITS = "kmgtp"
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogOptions:
    """What the logger needs of a container's log config.

    ``max_size``: rotate the file once it holds this many bytes (``None``: never rotate);
    ``max_file``: how many files to keep, the live one included (rotated ones are
    ``<path>.1`` … ``<path>.<max_file-1>``, ``.1`` the newest); ``compress``: always false
    (not supported yet)."""

    driver: str = DEFAULT_DRIVER
    max_size: int | None = None
    max_file: int = 1
    compress: bool = False

    @property
    def readable(self) -> bool:
        """Whether ``docker logs`` can read what this driver stores."""
        return self.driver != "none"

    @property
    def rotates(self) -> bool:
        return self.max_size is not None


def parse_size(text: str, *, binary: bool = False) -> int:
    """A size like go-units: ``FromHumanSize`` (decimal units) or, with ``binary``,
    ``RAMInBytes``. Accepts ``100``, ``1.5k``, ``10m``, ``10 MB``, ``2GiB``, ``512b``
    (unit letters k m g t p, any case, optionally followed by ``b`` or ``ib``)."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"invalid size: '{text}'")
    number, suffix = m.groups()
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"invalid size: '{text}'") from None
    unit = suffix.lower()
    if unit in ("", "b"):
        multiplier = 1
    elif unit[0] in _UNITS and unit[1:] in ("", "b", "ib"):
        multiplier = (_BINARY if binary else _DECIMAL) ** (_UNITS.index(unit[0]) + 1)
    else:
        raise ValueError(f"invalid suffix: '{unit}'")
    return int(amount * multiplier)


def _go_atoi(text: str) -> int:
    if re.fullmatch(r"[+-]?[0-9]+", text) is None:
        raise InvalidParameter(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _go_bool(text: str) -> bool:
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise InvalidParameter(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _check_builtin(opts: Mapping[str, str]) -> None:
    mode = opts.get("mode", "")
    if mode not in _MODES:
        raise InvalidParameter(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in opts:
        if mode != "non-blocking":
            raise InvalidParameter(
                "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
            )
        try:
            parse_size(opts["max-buffer-size"], binary=True)
        except ValueError as e:
            raise InvalidParameter(f"error parsing option max-buffer-size: {e}") from None


def parse_log_config(driver: str, opts: Mapping[str, str]) -> LogOptions:
    """Validate a driver name and its options; ``InvalidParameter`` with dockerd's wording.

    The caller resolves the daemon's default driver first; an empty ``driver`` means
    ``json-file``."""
    driver = driver or DEFAULT_DRIVER
    if driver == "none":
        return LogOptions(driver="none")  # dockerd ignores options of "none"
    _check_builtin(opts)
    if driver not in DRIVERS:
        raise InvalidParameter(f"logger: no log driver named '{driver}' is registered")
    for key in opts:
        if key in _BUILTIN_OPTS or key in _FILE_OPTS:
            continue
        if driver == "local":
            raise InvalidParameter(f"unknown log opt '{key}' for log driver local")
        raise InvalidParameter(f"unknown log opt '{key}' for {driver} log driver")

    local = driver == "local"
    max_size: int | None = _LOCAL_MAX_SIZE if local else None
    if "max-size" in opts:
        value = opts["max-size"]
        try:
            max_size = parse_size(value)
        except ValueError as e:
            raise InvalidParameter(
                f"invalid value for max-size: {value}: {e}" if local else str(e)
            ) from None
        if max_size <= 0:
            raise InvalidParameter("max-size must be a positive number")
    max_file = _LOCAL_MAX_FILE if local else 1
    if "max-file" in opts:
        value = opts["max-file"]
        try:
            max_file = _go_atoi(value)
        except InvalidParameter as e:
            if local:
                raise InvalidParameter(f"invalid value for max-file: {value}: {e}") from None
            raise
        if max_file < 1:
            raise InvalidParameter("max-file cannot be less than 1")
    if "compress" in opts and _go_bool(opts["compress"]):
        if max_file == 1 or max_size is None:
            raise InvalidParameter(
                "compress cannot be true when max-file is less than 2 or max-size is not set"
            )
        raise InvalidParameter(
            f"log-opt compress=true is not supported by whaled yet ({driver} log driver): "
            "rotated log files are kept uncompressed; remove the option or set it to false"
        )
    return LogOptions(driver=driver, max_size=max_size, max_file=max_file)


def check_readable(options: LogOptions) -> None:
    """``docker logs`` on a container whose driver stores nothing: dockerd's 501."""
    if not options.readable:
        raise Unsupported("configured logging driver does not support reading")
