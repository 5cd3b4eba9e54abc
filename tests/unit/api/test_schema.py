"""The request-body schema: Go-like decoding, canonical keys, type and value checks."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from whaled.api.schema import BodyError, decode_body
from whaled.api.schema.containers import CREATE, EXEC_CREATE, EXEC_START, UPDATE
from whaled.api.schema.core import INT, MAX_DEPTH, MAX_STRING, STR, Body, Field, Struct, parse_json


def create(body: Any) -> dict[str, Any]:
    return decode_body(json.dumps(body).encode(), CREATE)


def create_error(body: Any) -> str:
    with pytest.raises(BodyError) as e:
        create(body)
    return e.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"Cmd": [1, 2]},
            "invalid JSON: json: cannot unmarshal number into Go struct field "
            "ContainerConfigWrapper.Cmd of type string",
        ),
        (
            {"Labels": {"a": 5}},
            "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Labels "
            "of type string",
        ),
        (
            {"Labels": ["a"]},
            "json: cannot unmarshal array into Go struct field ContainerConfigWrapper.Labels "
            "of type map[string]string",
        ),
        ({"User": 0}, "ContainerConfigWrapper.User of type string"),
        (
            {"Tty": "yes"},
            "cannot unmarshal string into Go struct field ContainerConfigWrapper.Tty of type bool",
        ),
        ({"StopTimeout": "x"}, "ContainerConfigWrapper.StopTimeout of type int"),
        ({"Volumes": ["/x"]}, "array into Go struct field ContainerConfigWrapper.Volumes"),
        ({"Volumes": {"/x": 1}}, "ContainerConfigWrapper.Volumes of type struct {}"),
        ({"Env": [None]}, "null into Go struct field ContainerConfigWrapper.Env of type string"),
        ({"Env": "A=b"}, "ContainerConfigWrapper.Env of type []string"),
        ({"ExposedPorts": "x"}, "ContainerConfigWrapper.ExposedPorts of type nat.PortSet"),
        ({"Healthcheck": "x"}, "Healthcheck of type container.HealthConfig"),
        ({"Healthcheck": {"Interval": "1s"}}, "Healthcheck.Interval of type time.Duration"),
        (
            {"HostConfig": {"Memory": 2**63}},
            "cannot unmarshal number 9223372036854775808 into Go struct field "
            "ContainerConfigWrapper.HostConfig.Memory of type int64",
        ),
        ({"HostConfig": {"Memory": "lots"}}, "HostConfig.Memory of type int64"),
        (
            {"HostConfig": {"Memory": 1.5}},
            "number 1.5 into Go struct field ContainerConfigWrapper.HostConfig.Memory",
        ),
        ({"HostConfig": {"PidsLimit": "x"}}, "HostConfig.PidsLimit of type int64"),
        (
            {"HostConfig": {"BlkioWeight": 70000}},
            "number 70000 into Go struct field "
            "ContainerConfigWrapper.HostConfig.BlkioWeight of type uint16",
        ),
        ({"HostConfig": {"BlkioWeight": -1}}, "HostConfig.BlkioWeight of type uint16"),
        (
            {"HostConfig": {"RestartPolicy": "always"}},
            "RestartPolicy of type container.RestartPolicy",
        ),
        (
            {"HostConfig": {"RestartPolicy": {"MaximumRetryCount": "3"}}},
            "HostConfig.RestartPolicy.MaximumRetryCount of type int",
        ),
        ({"HostConfig": {"Mounts": [{"ReadOnly": "yes"}]}}, "HostConfig.Mounts.ReadOnly"),
        (
            {"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": "1"}]}},
            "HostConfig.Ulimits.Soft of type int64",
        ),
        (
            {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 80}]}}},
            "HostConfig.PortBindings.HostPort of type string",
        ),
        ({"HostConfig": []}, "HostConfig of type container.HostConfig"),
        (
            {"NetworkingConfig": {"EndpointsConfig": {"n": {"Aliases": "a"}}}},
            "NetworkingConfig.EndpointsConfig.Aliases of type []string",
        ),
        ([], "cannot unmarshal array into Go value of type ContainerConfigWrapper"),
    ],
)
def test_wrong_types_name_the_field(body: Any, message: str) -> None:
    assert message in create_error(body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Env": ["A=b\x00c"]}, "Env"),
        ({"Labels": {"a\x00": "b"}}, "Labels"),
        ({"Hostname": "h" * (MAX_STRING + 1)}, "Hostname"),
        ({"HostConfig": {"Binds": ["/a\x00:/b"]}}, "HostConfig.Binds"),
    ],
)
def test_nul_bytes_and_oversized_strings(body: Any, field: str) -> None:
    assert create_error(body).startswith(f"invalid JSON: invalid value for {field}: ")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"StopTimeout": NaN}',
        b'{"StopTimeout": Infinity}',
        b'{"HostConfig": {"Memory": -Infinity}}',
        b'{"Labels": ',
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"Labels": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001,
    ],
)
def test_malformed_json(raw: bytes) -> None:
    with pytest.raises(BodyError) as e:
        decode_body(raw, CREATE)
    assert e.value.message.startswith("invalid JSON: ")


def test_number_overflowing_a_float_is_named() -> None:
    with pytest.raises(BodyError) as e:
        decode_body(b'{"StopTimeout": 1e400}', CREATE)
    assert "number 1e400 into Go struct field ContainerConfigWrapper.StopTimeout" in str(e.value)


def test_depth_limit_counts_only_structure() -> None:
    nested: Any = "x"
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    assert create({"Image": "b", "Unknown": nested}) == {"Image": "b"}
    # brackets inside strings are not structure
    assert create({"Image": "[" * 10_000}) == {"Image": "[" * 10_000}
    with pytest.raises(BodyError):
        parse_json(json.dumps([[nested]]).encode())


def test_depth_scan_follows_strings_and_escapes() -> None:
    # a backslash, an escaped quote, then brackets inside strings: none of them is structure
    inner = ["\\", '"' + "[" * 100, "]" * 100 + "{" * 100]
    raw = "[" * (MAX_DEPTH - 1) + json.dumps(inner) + "]" * (MAX_DEPTH - 1)
    value = parse_json(raw.encode())
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == inner
    deep = "[" * (MAX_DEPTH + 1) + json.dumps(inner) + "]" * (MAX_DEPTH + 1)
    with pytest.raises(BodyError):
        parse_json(deep.encode())


def test_depth_scan_is_linear() -> None:
    started = time.monotonic()
    with pytest.raises(BodyError):
        parse_json(b"[" * 100 + b'"' + b'\\"' * 500_000)
    assert time.monotonic() - started < 5


def test_empty_body() -> None:
    with pytest.raises(BodyError):
        decode_body(b" ", CREATE)
    assert decode_body(b"", EXEC_START, required=False) == {}
    assert decode_body(b"null", EXEC_START) == {}


def test_keys_match_case_insensitively_and_are_canonicalised() -> None:
    out = create(
        {
            "image": "busybox",
            "CMD": "ls",
            "labels": {"Keep": "Case"},
            "hostconfig": {
                "CPURealtimeRuntime": 5,
                "memory": 7 << 20,
                "restartpolicy": {"name": "always"},
            },
        }
    )
    assert out == {
        "Image": "busybox",
        "Cmd": ["ls"],
        "Labels": {"Keep": "Case"},
        "HostConfig": {
            "CpuRealtimeRuntime": 5,
            "Memory": 7 << 20,
            "RestartPolicy": {"Name": "always"},
        },
    }


def test_exact_match_is_preferred_and_the_last_matching_key_wins() -> None:
    table = Body(Struct("T", [Field("Name", STR), Field("name", INT)]))
    assert decode_body(b'{"name": 1, "Name": "x"}', table) == {"name": 1, "Name": "x"}
    assert decode_body(b'{"NAME": "y"}', table) == {"Name": "y"}
    assert create({"cmd": ["a"], "Cmd": ["b"]}) == {"Cmd": ["b"]}
    assert create({"Cmd": ["b"], "cmd": ["a"]}) == {"Cmd": ["a"]}


def test_unknown_keys_are_dropped_and_nulls_follow_go() -> None:
    out = create(
        {
            "Image": "b",
            "Bogus": {"deep": [1]},
            "Hostname": None,
            "Cmd": None,
            "StopTimeout": None,
            "HostConfig": {"PidsLimit": None, "Memory": None, "Binds": None},
        }
    )
    assert out == {
        "Image": "b",
        "Cmd": None,
        "StopTimeout": None,
        "HostConfig": {"PidsLimit": None, "Binds": None},
    }


def test_valid_bodies_pass_through() -> None:
    body = {
        "Image": "busybox",
        "Cmd": ["sh", "-c", "true"],
        "Env": ["A=b"],
        "ExposedPorts": {"80/tcp": {}},
        "Volumes": {"/data": {}},
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 10**9, "Retries": 3},
        "StopTimeout": 3,
        "HostConfig": {
            "Binds": ["/a:/b:ro"],
            "Memory": 2**62,
            "PidsLimit": -1,
            "ConsoleSize": [24, 80],
            "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}],
            "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 0o755}}],
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
            "OomKillDisable": False,
            "Init": True,
        },
        "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["a"]}}},
    }
    assert create(body) == body


def test_console_size_is_a_pair() -> None:
    out = decode_body(b'{"ConsoleSize": [3]}', EXEC_START)
    assert out == {"ConsoleSize": [3, 0]}
    with pytest.raises(BodyError):
        decode_body(b'{"ConsoleSize": [-1, 2]}', EXEC_START)


def test_update_and_exec_bodies() -> None:
    with pytest.raises(BodyError) as e:
        decode_body(b'{"Memory": "lots"}', UPDATE)
    assert e.value.message == (
        "json: cannot unmarshal string into Go struct field container.UpdateConfig.Memory of "
        "type int64"
    )
    assert decode_body(b'{"cpurealtimeruntime": 1, "restartPolicy": {"name": "no"}}', UPDATE) == {
        "CpuRealtimeRuntime": 1,
        "RestartPolicy": {"Name": "no"},
    }
    assert decode_body(b'{"cmd": ["ls"], "detachKeys": "ctrl-x"}', EXEC_CREATE) == {
        "Cmd": ["ls"],
        "DetachKeys": "ctrl-x",
    }
    with pytest.raises(BodyError) as e:
        decode_body(b'{"Cmd": ["ls"], "Env": [1]}', EXEC_CREATE)
    assert "types.ExecConfig.Env of type string" in e.value.message
    assert decode_body(b'{"detach": true, "tty": false}', EXEC_START) == {
        "Detach": True,
        "Tty": False,
    }


def test_lone_surrogates_become_the_replacement_character() -> None:
    """Issue 17 (input audit): ``"\\ud800"`` was kept as a lone surrogate, stored and shown
    back by inspect (JSON no Go client decodes as sent); Go's decoder makes it U+FFFD."""
    raw = b'{"Image": "b", "Cmd": ["x\\ud800y", "\\ud83d\\ude00"], "Labels": {"\\udfff": "v"}}'
    body = decode_body(raw, CREATE)
    assert body["Cmd"] == ["x\ufffdy", "\U0001f600"]
    assert body["Labels"] == {"\ufffd": "v"}
    json.dumps(body).encode()  # and it can be written
    assert parse_json(b'"\\u00e9"') == "\u00e9"  # other escapes untouched
