from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter, Unsupported
from whaled.logger.options import LogOptions, check_readable, parse_log_config, parse_size


def test_defaults_per_driver() -> None:
    assert parse_log_config("json-file", {}) == LogOptions(driver="json-file")
    assert parse_log_config("", {}) == LogOptions(driver="json-file")
    assert parse_log_config("k8s-file", {}) == LogOptions(driver="k8s-file")
    assert parse_log_config("local", {}) == LogOptions(
        driver="local", max_size=20 * 1024 * 1024, max_file=5
    )
    none = parse_log_config("none", {"anything": "goes"})  # dockerd ignores its options
    assert none == LogOptions(driver="none") and not none.readable


def test_json_file_options() -> None:
    opts = {
        "max-size": "10m",
        "max-file": "3",
        "labels": "a,b",
        "labels-regex": "^a",
        "env": "X",
        "env-regex": "^X",
        "tag": "{{.Name}}",
        "compress": "false",
        "mode": "non-blocking",
        "max-buffer-size": "4m",
    }
    got = parse_log_config("json-file", opts)
    assert got == LogOptions(driver="json-file", max_size=10_000_000, max_file=3)
    assert got.rotates and got.readable
    # max-file without max-size: accepted by dockerd, the file just never rotates.
    assert parse_log_config("json-file", {"max-file": "5"}).max_size is None


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100", 100),
        ("10k", 10_000),
        ("10K", 10_000),
        ("10kb", 10_000),
        ("10KiB", 10_000),
        ("1.5m", 1_500_000),
        ("10 MB", 10_000_000),
        ("1g", 1_000_000_000),
        ("2t", 2_000_000_000_000),
        ("512b", 512),
    ],
)
def test_sizes_are_decimal_like_dockerds_json_file(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_binary_sizes() -> None:
    assert parse_size("4m", binary=True) == 4 * 1024 * 1024
    assert parse_size("1KiB", binary=True) == 1024


@pytest.mark.parametrize(
    ("driver", "opts", "message"),
    [
        ("syslog", {}, "logger: no log driver named 'syslog' is registered"),
        ("json-file", {"max-sise": "1m"}, "unknown log opt 'max-sise' for json-file log driver"),
        ("k8s-file", {"path": "/x"}, "unknown log opt 'path' for k8s-file log driver"),
        ("local", {"labels-x": "1"}, "unknown log opt 'labels-x' for log driver local"),
        ("json-file", {"max-size": "abc"}, "invalid size: 'abc'"),
        ("json-file", {"max-size": "-1m"}, "invalid size: '-1m'"),
        ("json-file", {"max-size": "10x"}, "invalid suffix: 'x'"),
        ("json-file", {"max-size": "10kbb"}, "invalid suffix: 'kbb'"),
        ("json-file", {"max-size": "0"}, "max-size must be a positive number"),
        ("local", {"max-size": "q"}, "invalid value for max-size: q: invalid size: 'q'"),
        ("json-file", {"max-file": "x"}, 'strconv.Atoi: parsing "x": invalid syntax'),
        ("json-file", {"max-file": "0"}, "max-file cannot be less than 1"),
        (
            "local",
            {"max-file": "two"},
            'invalid value for max-file: two: strconv.Atoi: parsing "two": invalid syntax',
        ),
        ("json-file", {"compress": "yes"}, 'strconv.ParseBool: parsing "yes": invalid syntax'),
        (
            "json-file",
            {"compress": "true"},
            "compress cannot be true when max-file is less than 2 or max-size is not set",
        ),
        ("json-file", {"mode": "fast"}, "logger: logging mode not supported: fast"),
        (
            "json-file",
            {"max-buffer-size": "1m"},
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'",
        ),
        (
            "json-file",
            {"mode": "non-blocking", "max-buffer-size": "lots"},
            "error parsing option max-buffer-size: invalid size: 'lots'",
        ),
    ],
)
def test_invalid_configs_use_dockerds_words(
    driver: str, opts: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidParameter) as e:
        parse_log_config(driver, opts)
    assert str(e.value) == message


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_compression_is_refused_clearly(driver: str) -> None:
    with pytest.raises(InvalidParameter, match="compress=true is not supported by whaled yet"):
        parse_log_config(driver, {"max-size": "1m", "max-file": "3", "compress": "1"})


def test_reading_needs_a_driver_that_stores() -> None:
    check_readable(parse_log_config("json-file", {}))
    with pytest.raises(Unsupported) as e:
        check_readable(parse_log_config("none", {}))
    assert str(e.value) == "configured logging driver does not support reading"
