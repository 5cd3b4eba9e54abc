"""Reading the config file (the only I/O in ``whaled.config``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from whaled.config.loader import ConfigSource, load
from whaled.config.model import DEFAULT_CONFIG_FILE, Config
from whaled.config.validate import check_host, real_host_probe, validate_config
from whaled.errors import ConfigError


def read_config_file(path: str, explicit: bool) -> str | None:
    """Return the file's text; None when the default file is absent (that is fine).

    A file named explicitly with --config-file must exist, as with dockerd.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        if not explicit and os.path.abspath(path) == DEFAULT_CONFIG_FILE:
            return None
        raise ConfigError(
            f"unable to configure the whaled daemon with file {path}: "
            f"open {path}: no such file or directory"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"unable to configure the whaled daemon with file {path}: {e}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class StartupSource:
    """What the daemon was started with; a reload re-reads the file and keeps the flags."""

    flags: dict[str, Any]
    config_file: str
    explicit_file: bool

    def read(self) -> ConfigSource:
        text = read_config_file(self.config_file, self.explicit_file)
        return ConfigSource(flags=self.flags, file_path=self.config_file, file_text=text)


def load_and_validate(startup: StartupSource) -> Config:
    """The full start-up check, also used by --validate and by reload."""
    cfg = load(startup.read())
    validate_config(cfg)
    check_host(cfg, real_host_probe(), home=os.path.expanduser("~"))
    return cfg
