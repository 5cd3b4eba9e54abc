from __future__ import annotations

import pytest

from whaled.errors import Conflict, NotFound, SystemFailure
from whaled.runtime.backend.api import TaskStatus
from whaled.runtime.backend.conmon_args import (
    ConmonArgs,
    RuntimeCommand,
    build_conmon_argv,
    check_socket_path,
    container_paths,
    delete_argv,
    exec_paths,
    is_conmon_cmdline,
    kill_argv,
    parse_exit_file,
    parse_pid,
    parse_ps,
    parse_state,
    parse_stats,
    parse_sync_messages,
    pause_argv,
    ps_argv,
    reopen_log_message,
    resize_message,
    resume_argv,
    runtime_error,
    runtime_error_message,
    start_argv,
    state_argv,
    stats_argv,
    update_argv,
)

RT = RuntimeCommand(path="/run/w/runtimes/abc.sh", global_args=("--root", "/run/w/runc"))


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_container_paths_layout() -> None:
    p = container_paths("c1", "/b/c1", "/s/c1")
    assert p.conmon_pidfile == "/s/c1/conmon.pid"
    assert p.pidfile == "/s/c1/pid"
    assert p.exit_file == "/s/c1/exits/c1"
    assert p.oom_file == "/s/c1/persist/oom"
    assert p.attach_socket == "/s/c1/s/c/attach"
    assert p.ctl_fifo == "/b/c1/ctl"


def test_exec_paths_are_per_session_and_checked() -> None:
    p = exec_paths("c1", "/s/c1", "e" * 64)
    assert p.bundle_dir == p.dir == "/s/c1/x/" + "e" * 64
    assert p.exit_file == p.dir + "/exits/c1"  # conmon names the exit file after the cid
    assert p.attach_socket == "/s/c1/s/x" + "e" * 12 + "/attach"
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            exec_paths("c1", "/s", bad)


def test_socket_path_limit() -> None:
    check_socket_path("/" + "a" * 106)
    with pytest.raises(ValueError):
        check_socket_path("/" + "a" * 107)


def test_conmon_argv_for_a_container() -> None:
    paths = container_paths("c1", "/b/c1", "/s/c1")
    argv = build_conmon_argv(
        ConmonArgs(
            conmon_path="/usr/bin/conmon",
            container_id="c1",
            cuuid="c",
            name="web",
            runtime=RT,
            paths=paths,
            log_path="/logs/c1.log",
            log_size_max=1024,
            terminal=True,
            stdin=True,
            leave_stdin_open=True,
            exit_command=("/usr/bin/whaled", "cleanup", "c1"),
            timeout=5,
        )
    )
    assert argv[0] == "/usr/bin/conmon"
    assert flag_value(argv, "--api-version") == "1"
    assert flag_value(argv, "--cid") == "c1"
    assert flag_value(argv, "--cuuid") == "c"
    assert flag_value(argv, "--name") == "web"
    assert flag_value(argv, "--runtime") == RT.path
    assert flag_value(argv, "--bundle") == "/b/c1"
    assert flag_value(argv, "--container-pidfile") == "/s/c1/pid"
    assert flag_value(argv, "--conmon-pidfile") == "/s/c1/conmon.pid"
    assert flag_value(argv, "--exit-dir") == "/s/c1/exits"
    assert flag_value(argv, "--persist-dir") == "/s/c1/persist"
    assert flag_value(argv, "--socket-dir-path") == "/s/c1/s"
    assert flag_value(argv, "--log-path") == "k8s-file:/logs/c1.log"
    assert flag_value(argv, "--log-size-max") == "1024"
    assert flag_value(argv, "--timeout") == "5"
    assert ["--runtime-arg=--root", "--runtime-arg=/run/w/runc"] == [
        a for a in argv if a.startswith("--runtime-arg")
    ]
    assert {"--terminal", "--stdin", "--leave-stdin-open"} <= set(argv)
    assert flag_value(argv, "--exit-command") == "/usr/bin/whaled"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--exit-command-arg"] == [
        "cleanup",
        "c1",
    ]
    assert "--exec" not in argv and "--sync" not in argv


def test_conmon_argv_minimal_and_exec() -> None:
    paths = exec_paths("c1", "/s/c1", "e1")
    argv = build_conmon_argv(
        ConmonArgs(
            container_id="c1",
            cuuid="xe1",
            name="",
            runtime=RuntimeCommand(path="/usr/sbin/runc"),
            paths=paths,
            exec_process_spec=paths.process_spec,
            exec_attach=True,
        )
    )
    assert flag_value(argv, "--log-path") == "none:"
    assert flag_value(argv, "--name") == "c1"
    assert flag_value(argv, "--bundle") == "/s/c1/x/e1"
    assert flag_value(argv, "--exec-process-spec") == "/s/c1/x/e1/process.json"
    assert "--exec" in argv and "--exec-attach" in argv
    for absent in ("--terminal", "--stdin", "--log-size-max", "--exit-command", "--timeout"):
        assert absent not in argv
    assert not any(a.startswith("--runtime-arg") for a in argv)


def test_runtime_argv_use_the_locked_in_path() -> None:
    g = ["/run/w/runtimes/abc.sh", "--root", "/run/w/runc"]
    assert start_argv(RT, "c1") == [*g, "start", "c1"]
    assert kill_argv(RT, "c1", 15) == [*g, "kill", "c1", "15"]
    assert kill_argv(RT, "c1", 9, all=True) == [*g, "kill", "--all", "c1", "9"]
    assert pause_argv(RT, "c1") == [*g, "pause", "c1"]
    assert resume_argv(RT, "c1") == [*g, "resume", "c1"]
    assert state_argv(RT, "c1") == [*g, "state", "c1"]
    assert delete_argv(RT, "c1") == [*g, "delete", "c1"]
    assert delete_argv(RT, "c1", force=True) == [*g, "delete", "--force", "c1"]
    assert ps_argv(RT, "c1") == [*g, "ps", "--format", "json", "c1"]
    assert update_argv(RT, "c1") == [*g, "update", "--resources", "-", "c1"]
    assert stats_argv(RT, "c1") == [*g, "events", "--stats", "c1"]


def test_sync_messages() -> None:
    msgs = parse_sync_messages(b'{"data": 42}\n{"data": -1, "message": "boom"}\n{"da')
    assert [(m.data, m.message) for m in msgs] == [(42, None), (-1, "boom")]
    assert parse_sync_messages(b"") == []
    with pytest.raises(SystemFailure):
        parse_sync_messages(b"nope\n")
    with pytest.raises(SystemFailure):
        parse_sync_messages(b'{"pid": 1}\n')


def test_exit_file_and_pid() -> None:
    assert parse_exit_file("3") == 3
    assert parse_exit_file("137\n") == 137
    assert parse_exit_file("") is None
    assert parse_exit_file("x") is None
    assert parse_pid("123\n") == 123
    assert parse_pid("") is None
    assert parse_pid("0") is None
    assert parse_pid("-4") is None


def test_parse_state() -> None:
    s = parse_state('{"ociVersion": "1.0.2", "id": "c1", "pid": 77, "status": "paused"}')
    assert s.status is TaskStatus.PAUSED and s.pid == 77
    assert parse_state('{"status": "weird"}').status is TaskStatus.UNKNOWN
    with pytest.raises(SystemFailure):
        parse_state("not json")
    with pytest.raises(SystemFailure):
        parse_state("[]")


def test_parse_ps_and_stats() -> None:
    assert parse_ps("[1, 2]\n") == [1, 2]
    assert parse_ps("null") == []
    assert parse_ps("") == []
    with pytest.raises(SystemFailure):
        parse_ps('["a"]')
    assert parse_stats('{"type":"stats","id":"c1","data":{"pids":{"current":2}}}\n') == {
        "pids": {"current": 2}
    }
    with pytest.raises(SystemFailure):
        parse_stats("")


def test_runtime_errors_are_classified() -> None:
    json_err = '{"level":"error","msg":"container does not exist","time":"t"}\n'
    assert runtime_error_message(json_err) == "container does not exist"
    assert runtime_error_message('{"level":"info","msg":"x"}\n') == "x"
    assert runtime_error_message("plain text\n") == "plain text"
    assert isinstance(runtime_error("kill", "c1", json_err), NotFound)
    assert isinstance(runtime_error("kill", "c1", "container not running"), Conflict)
    assert isinstance(runtime_error("resume", "c1", "container not paused"), Conflict)
    err = runtime_error("pause", "c1", "cgroup: permission denied")
    assert isinstance(err, SystemFailure)
    assert "pause c1" in str(err) and "permission denied" in str(err)
    assert "without a message" in str(runtime_error("state", "c1", ""))


def test_ctl_messages() -> None:
    assert resize_message(80, 24) == b"1 24 80\n"
    assert reopen_log_message() == b"2 0 0\n"
    with pytest.raises(ValueError):
        resize_message(-1, 2)


def test_conmon_cmdline_guard() -> None:
    cmd = b"/usr/bin/conmon\0--api-version\0001\0--cid\0c1\0--bundle\0/b/c1\0"
    assert is_conmon_cmdline(cmd, "c1", "/b/c1")
    assert not is_conmon_cmdline(cmd, "c2", "/b/c1")
    assert not is_conmon_cmdline(cmd, "c1", "/b/other")
    assert not is_conmon_cmdline(b"/bin/sleep\0--cid\0c1\0--bundle\0/b/c1\0", "c1", "/b/c1")
    assert not is_conmon_cmdline(b"", "c1", "/b/c1")
    assert is_conmon_cmdline(b"conmon\0-c\0c1\0-b\0/b/c1\0", "c1", "/b/c1")
