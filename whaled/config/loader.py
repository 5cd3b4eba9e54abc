"""Merge command-line flags with daemon.json and build a Config (pure).

Flags arrive already converted to daemon.json's JSON shape (see ``whaled.cli``), so a value
given as a flag and the same value given in the file go through the same decoder and the
same validation. Like dockerd: a key given both ways is an error naming the keys, unknown
keys are an error naming them, and a wrong type or value is an error naming the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whaled.config.model import Config
from whaled.config.options import OPTIONS_BY_KEY
from whaled.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSource:
    """Everything a Config is built from: the flags given and the file as read."""

    flags: Mapping[str, Any]
    file_path: str = ""
    file_text: str | None = None  # None: no file (a missing default file is fine)


def parse_file(path: str, text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"invalid JSON in {path}: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid JSON in {path}: the top level must be an object")
    return data


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def merge(flags: Mapping[str, Any], file_values: Mapping[str, Any]) -> dict[str, Any]:
    """Check unknown keys and flag/file conflicts; return the merged JSON values."""
    unknown = [k for k in file_values if k not in OPTIONS_BY_KEY]
    if unknown:
        raise ConfigError(
            "the following directives don't match any configuration option: "
            + ", ".join(sorted(unknown))
        )
    conflicts = [
        f"{k}: (from flag: {_show(flags[k])}, from file: {_show(file_values[k])})"
        for k in sorted(flags)
        if k in file_values
    ]
    if conflicts:
        raise ConfigError(
            "the following directives are specified both as a flag and in the configuration "
            "file: " + ", ".join(conflicts)
        )
    merged = dict(file_values)
    merged.update(flags)
    return merged


def build_config(values: Mapping[str, Any]) -> Config:
    fields: dict[str, Any] = {}
    for key, raw in values.items():
        option = OPTIONS_BY_KEY.get(key)
        if option is None:  # flags are built from the table; this is a programming error
            raise ConfigError(f"unknown configuration option: {key}")
        fields[option.field] = option.decode(key, raw)
    return Config(**fields)


def load(source: ConfigSource) -> Config:
    """Build the Config from flags + file, decoding every value (no semantic checks)."""
    try:
        file_values = (
            parse_file(source.file_path, source.file_text) if source.file_text is not None else {}
        )
        return build_config(merge(source.flags, file_values))
    except ConfigError as e:
        if source.file_text is None:
            raise
        raise ConfigError(
            f"unable to configure the whaled daemon with file {source.file_path}: {e}"
        ) from None
