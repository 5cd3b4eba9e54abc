"""Property tests of the configuration: flags and daemon.json merged, decoded and validated
from any JSON give a Config or a ConfigError (a 400 / a refused start), never another
exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from whaled.config.loader import ConfigSource, build_config, load, merge, parse_file
from whaled.config.model import Config
from whaled.config.options import OPTIONS_BY_KEY
from whaled.config.validate import validate_config
from whaled.errors import ConfigError

PROPS = settings(max_examples=300, deadline=None)

_KEYS = st.one_of(st.sampled_from(sorted(OPTIONS_BY_KEY)), st.text(max_size=10))
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["/var/lib/x", "unix:///run/x.sock", "tcp://0.0.0.0:2375", "64m", "runc"]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(_KEYS, st.text(max_size=6)), inner, max_size=3),
    ),
    max_leaves=12,
)
_DOCS = st.dictionaries(_KEYS, _JSON, max_size=5)


def _config_or_error(flags: dict[str, object], file_values: dict[str, object]) -> None:
    try:
        cfg = build_config(merge(flags, file_values))
        validate_config(cfg)
    except ConfigError as e:
        assert str(e)
        return
    assert isinstance(cfg, Config)


@PROPS
@given(_DOCS)
def test_any_daemon_json_gives_a_config_or_a_config_error(doc: dict[str, object]) -> None:
    _config_or_error({}, doc)


@PROPS
@given(_DOCS, _DOCS)
def test_flags_and_file_merge_or_conflict(flags: dict[str, object], doc: dict[str, object]) -> None:
    flags = {k: v for k, v in flags.items() if k in OPTIONS_BY_KEY}
    try:
        merged = merge(flags, doc)
    except ConfigError as e:
        assert "don't match any configuration option" in str(e) or "both as a flag" in str(e)
        return
    assert set(merged) == set(flags) | set(doc)
    _config_or_error(flags, doc)


@PROPS
@given(st.one_of(st.text(max_size=60), _JSON.map(json.dumps)))
def test_any_file_text_loads_or_raises_a_config_error(text: str) -> None:
    try:
        parse_file("/etc/whaled/daemon.json", text)
        cfg = load(ConfigSource(flags={}, file_path="/etc/whaled/daemon.json", file_text=text))
    except ConfigError:
        return
    assert isinstance(cfg, Config)
