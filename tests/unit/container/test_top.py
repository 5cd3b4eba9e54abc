from __future__ import annotations

import pytest

from whaled.container.top import (
    DEFAULT_PS_ARGS,
    fields_ascii,
    parse_ps,
    ps_argvs,
    ps_error,
    ps_pids_arg,
    validate_ps_args,
)
from whaled.errors import InvalidParameter, SystemFailure

PS_EF = """\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 12:00 ?        00:00:01 /sbin/init
root        4242    4200  0 12:01 ?        00:00:00 sh -c while true; do sleep 1; done
root        4243    4242  0 12:01 ?        00:00:00 sleep  1
root        5000       1  0 12:02 pts/0    00:00:00 ps -ef
"""


def test_default_args() -> None:
    assert DEFAULT_PS_ARGS == "-ef"
    assert validate_ps_args("") == ["-ef"]


def test_parse_ps_ef_keeps_container_pids_and_joins_command() -> None:
    titles, procs = parse_ps(PS_EF, [4242, 4243], "-ef")
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert procs == [
        [
            "root",
            "4242",
            "4200",
            "0",
            "12:01",
            "?",
            "00:00:00",
            "sh -c while true; do sleep 1; done",
        ],
        ["root", "4243", "4242", "0", "12:01", "?", "00:00:00", "sleep 1"],
    ]


def test_parse_no_matching_pid() -> None:
    titles, procs = parse_ps(PS_EF, [99], "-ef")
    assert len(titles) == 8 and procs == []


def test_thread_rows_follow_their_process() -> None:
    # dockerd's own fixture shape (`ps m`-style thread lines with "-" as PID).
    out = "  PID COMMAND\n   42 foo\n   43 bar\n\t\t- -\n  100 baz\n\t\t- -\n"
    titles, procs = parse_ps(out, [42, 43])
    assert titles == ["PID", "COMMAND"]
    assert procs == [["42", "foo"], ["43", "bar"], ["-", "-"]]


def test_missing_pid_column() -> None:
    with pytest.raises(SystemFailure, match=r"^Couldn't find PID field in ps output$"):
        parse_ps("  UID COMMAND\n   42 foo\n", [42])
    with pytest.raises(SystemFailure, match="Couldn't find PID field"):
        parse_ps("   42\n", [42])  # `-o pid=` / --no-headers


def test_unicode_space_does_not_split() -> None:
    # U+2003 EM SPACE between PID and COMMAND: one title "PID\u2003COMMAND", no PID column.
    with pytest.raises(SystemFailure, match="Couldn't find PID field"):
        parse_ps("\u2003PID\u2003COMMAND\n   42 foo\n", [42])
    assert fields_ascii("a\u2003b c\td") == ["a\u2003b", "c", "d"]


def test_unexpected_pid() -> None:
    with pytest.raises(SystemFailure, match=r"^Unexpected pid 'abc': strconv\.Atoi: parsing"):
        parse_ps("PID CMD\nabc foo\n", [1])


def test_validate_ps_args_refuses_pid_renames() -> None:
    for bad, shown in [
        ("ae -o uid=PID", 'specifying "uid=PID" is not allowed'),
        ('ae -o "uid= PID"', 'specifying ""uid=PID"" is not allowed'),
        ("ae o uid=PID", 'specifying "uid=PID" is not allowed'),
        ("aeo uid=PID", 'specifying "uid=PID" is not allowed'),
        ("ae -ouid=PID", 'specifying "-ouid=PID" is not allowed'),
        ("ae -o pid=PID2 -o uid=PID", 'specifying "uid=PID" is not allowed'),
    ]:
        with pytest.raises(InvalidParameter) as err:
            validate_ps_args(bad)
        assert err.value.message == shown, bad


def test_validate_ps_args_accepts() -> None:
    assert validate_ps_args("ae -o pid=PID") == ["ae", "-o", "pid=PID"]
    assert validate_ps_args("ae -o pid=PID -o comm") == ["ae", "-o", "pid=PID", "-o", "comm"]
    assert validate_ps_args('ae -o "uid=\u2003PID"') == ["ae", "-o", "uid=\u2003PID"]
    assert validate_ps_args("-o pid,comm") == ["-o", "pid,comm"]
    assert validate_ps_args("aux") == ["aux"]


def test_validate_ps_args_unbalanced_quote() -> None:
    with pytest.raises(InvalidParameter, match="invalid ps arguments"):
        validate_ps_args("-o 'pid")


def test_ps_argvs_and_errors() -> None:
    assert ps_pids_arg([1, 22, 333]) == "-q1,22,333"
    first, fallback = ps_argvs(["-ef"], [7, 8])
    assert first == ["ps", "-ef", "-q7,8"]
    assert fallback == ["ps", "-ef"]
    assert ps_error("error: unsupported option\nusage...\n", "exit status 1").message == (
        "ps: error: unsupported option"
    )
    assert ps_error("", "exit status 1").message == "ps: exit status 1"
    assert isinstance(ps_error("", "exit status 1"), SystemFailure)


def test_ps_refusing_the_clients_arguments_is_a_400() -> None:
    """Issue 17 (fuzzing: ``ps_args`` of garbage answered 500): the client's error."""
    error = ps_error("error: garbage option\n", "exit status 1", client_args=True)
    assert isinstance(error, InvalidParameter)
    assert error.message == "ps: error: garbage option"
