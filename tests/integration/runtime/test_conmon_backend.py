"""The conmon backend against real conmon + runc: run, logs, exit codes, kill, exec,
pause/resume, re-adoption after a "daemon restart", runtime lock-in and OOM."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import time

import pytest

from whaled.errors import Conflict, NotFound, SystemFailure
from whaled.logger.crilog import join_lines, parse_line
from whaled.runtime.backend.api import (
    STREAM_STDERR,
    STREAM_STDOUT,
    AttachStream,
    StdioOptions,
    TaskStatus,
)
from whaled.runtime.backend.conmon import ConmonBackend, ConmonTask

from .conftest import RUNC, Rig

EXEC_BASE = {"env": ["PATH=/bin:/usr/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}}


def read_log(path: str) -> list[tuple[str, bytes]]:
    with open(path, "rb") as f:
        records = [r for r in (parse_line(line) for line in f) if r is not None]
    return [(r.stream, r.data) for r in join_lines(records)]


async def run_container(rig: Rig, cid: str, args: list[str]) -> tuple[ConmonTask, str]:
    backend = ConmonBackend()
    opts = rig.options(cid, rig.bundle(cid, args))
    container = await backend.create(opts)
    task = await container.start()
    assert task.pid > 0
    return task, opts.log_path or ""


def test_echo_hi_reaches_the_log(rig: Rig) -> None:
    async def main() -> None:
        backend = ConmonBackend()
        opts = rig.options("echo1", rig.bundle("echo1", ["sh", "-c", "echo hi; echo oops >&2"]))
        container = await backend.create(opts)
        task = await container.start()
        status = await task.wait()
        assert status.exit_code == 0
        assert not status.oom_killed
        assert abs(status.exited_at.timestamp() - time.time()) < 30
        assert task.exit_status() == status
        assert opts.log_path is not None
        assert read_log(opts.log_path) == [("stdout", b"hi\n"), ("stderr", b"oops\n")]
        await container.delete()
        assert not os.path.exists(opts.state_dir)

    asyncio.run(main())


def test_exit_code_propagates(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "exit3", ["sh", "-c", "exit 3"])
        # Several waiters share one result.
        a, b = await asyncio.gather(task.wait(), task.wait())
        assert a.exit_code == b.exit_code == 3
        assert (await task.state()).status == TaskStatus.STOPPED
        await task.container.delete()

    asyncio.run(main())


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGKILL, 137)])
def test_kill_sleep(rig: Rig, sig: int, code: int) -> None:
    async def main() -> None:
        # sh as pid 1 ignores SIGTERM unless it traps it: trap → exit like a killed process
        args = ["sh", "-c", "trap 'exit 143' TERM; sleep 100 & wait"]
        task, _ = await run_container(rig, f"kill{sig}", args)
        assert (await task.state()).status == TaskStatus.RUNNING
        assert len(await task.pids()) >= 2
        await task.kill(sig)
        status = await asyncio.wait_for(task.wait(), 20)
        assert status.exit_code == code
        with pytest.raises(Conflict):
            await task.kill(signal.SIGKILL)
        await task.container.delete()

    asyncio.run(main())


def test_delete_running_needs_force(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "del1", ["sleep", "100"])
        with pytest.raises(Conflict):
            await task.container.delete()
        await task.container.delete(force=True)
        assert (await task.wait()).exit_code == 137
        assert rig.runc("state", "del1").returncode != 0

    asyncio.run(main())


def test_exec_echo_and_exit_code(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "exec1", ["sleep", "100"])
        spec = {
            "args": ["sh", "-c", "echo from-exec; exit 5"],
            "env": ["PATH=/bin:/usr/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
        }
        exec_log = os.path.join(rig.root, "exec1-e1.log")
        proc = await task.exec("e1", spec, log_path=exec_log)
        assert proc.pid > 0
        status = await asyncio.wait_for(proc.wait(), 20)
        assert status.exit_code == 5
        assert read_log(exec_log) == [("stdout", b"from-exec\n")]
        with pytest.raises(Conflict):
            await task.exec("e1", spec)
        # a long exec killed by signal
        spec2 = {**spec, "args": ["sleep", "50"]}
        proc2 = await task.exec("e2", spec2)
        await proc2.kill(signal.SIGKILL)
        assert (await asyncio.wait_for(proc2.wait(), 20)).exit_code == 137
        # the container itself is untouched
        assert (await task.state()).status == TaskStatus.RUNNING
        await task.kill(signal.SIGKILL)
        assert (await task.wait()).exit_code == 137
        await task.container.delete()

    asyncio.run(main())


def _freezer_state(rig: Rig, cid: str) -> str:
    for path in rig.cgroup_dirs(cid):
        state = os.path.join(path, "freezer.state")  # cgroup v1
        if os.path.exists(state):
            with open(state) as f:
                return f.read().strip()
    for path in rig.cgroup_dirs(cid):
        frozen = os.path.join(path, "cgroup.freeze")  # cgroup v2
        if os.path.exists(frozen):
            with open(frozen) as f:
                return "FROZEN" if f.read().strip() == "1" else "THAWED"
    raise AssertionError("no freezer for the container")


def test_pause_resume(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "pause1", ["sleep", "100"])
        await task.pause()
        assert (await task.state()).status == TaskStatus.PAUSED
        assert _freezer_state(rig, "pause1") == "FROZEN"
        await task.resume()
        assert (await task.state()).status == TaskStatus.RUNNING
        assert _freezer_state(rig, "pause1") == "THAWED"
        with pytest.raises(Conflict):
            await task.resume()
        await task.kill(signal.SIGKILL)
        await task.wait()
        await task.container.delete()

    asyncio.run(main())


def test_readopt_after_restart(rig: Rig) -> None:
    bundle = rig.bundle(
        "adopt1", ["sh", "-c", "echo started; trap 'exit 7' TERM; sleep 100 & wait"]
    )
    opts = rig.options("adopt1", bundle)

    async def first_daemon() -> int:
        container = await ConmonBackend().create(opts)
        task = await container.start()
        return task.pid

    async def second_daemon(pid: int) -> None:
        container = ConmonBackend().load(opts)  # a fresh backend: only files on disk
        task = await container.task()
        assert task.pid == pid
        assert task.exit_status() is None
        assert (await task.state()).status == TaskStatus.RUNNING
        proc = await task.exec("late", {**EXEC_BASE, "args": ["true"]})
        assert (await proc.wait()).exit_code == 0
        await task.kill(signal.SIGTERM)
        assert (await asyncio.wait_for(task.wait(), 20)).exit_code == 7
        await container.delete()

    pid = asyncio.run(first_daemon())
    asyncio.run(second_daemon(pid))
    assert read_log(opts.log_path or "")[0] == ("stdout", b"started\n")


def test_readopt_container_that_exited_while_down(rig: Rig) -> None:
    opts = rig.options("gone1", rig.bundle("gone1", ["sh", "-c", "sleep 0.2; exit 4"]))

    async def first_daemon() -> None:
        container = await ConmonBackend().create(opts)
        await container.start()

    async def second_daemon() -> None:
        container = ConmonBackend().load(opts)
        task = await container.task()
        assert (await task.wait()).exit_code == 4
        await container.delete()
        with pytest.raises(NotFound):
            await container.task()

    asyncio.run(first_daemon())
    time.sleep(1.0)
    asyncio.run(second_daemon())


def test_wrapper_runtime_is_used_for_every_call(rig: Rig) -> None:
    wrapper = os.path.join(rig.root, "rt.sh")
    calls = os.path.join(rig.root, "calls")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\necho "$@" >> {calls}\nexec {RUNC} --log-format json "$@"\n')
    os.chmod(wrapper, 0o755)

    async def main() -> None:
        opts = rig.options("wrap1", rig.bundle("wrap1", ["sleep", "100"]), runtime_path=wrapper)
        container = await ConmonBackend().create(opts)
        task = await container.start()
        await task.pause()
        await task.resume()
        proc = await task.exec("w", {**EXEC_BASE, "args": ["true"]})
        assert (await proc.wait()).exit_code == 0
        assert (await task.state()).status == TaskStatus.RUNNING
        await task.pids()
        await task.kill(signal.SIGKILL)
        assert (await task.wait()).exit_code == 137
        await container.delete()

    asyncio.run(main())
    with open(calls) as f:
        verbs = [line.split()[2] for line in f if line.strip()]  # after "--root <dir>"
    for verb in ("create", "start", "pause", "resume", "exec", "state", "ps", "kill", "delete"):
        assert verb in verbs, (verb, verbs)


def test_create_failure_is_clear_and_clean(rig: Rig) -> None:
    async def main() -> None:
        opts = rig.options("bad1", rig.bundle("bad1", ["/does/not/exist"]))
        with pytest.raises(SystemFailure) as info:
            await ConmonBackend().create(opts)
        assert "/does/not/exist" in str(info.value)
        assert not os.path.exists(opts.state_dir)

    asyncio.run(main())


def test_tty_and_stdin_options(rig: Rig) -> None:
    async def main() -> None:
        opts = rig.options(
            "tty1",
            rig.bundle("tty1", ["sh", "-c", "tty; stty size"], tty=True),
            stdio=StdioOptions(tty=True),
        )
        container = await ConmonBackend().create(opts)
        task = await container.start()
        assert (await task.wait()).exit_code == 0
        lines = [data for _, data in read_log(opts.log_path or "")]
        assert lines and lines[0].startswith(b"/dev/pts/")
        await container.delete()

    asyncio.run(main())


def test_oom_kill_is_reported(rig: Rig) -> None:
    async def main() -> None:
        limit = 16 * 1024 * 1024
        hog = ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]
        opts = rig.options("oom1", rig.bundle("oom1", hog, memory_limit=limit))
        container = await ConmonBackend().create(opts)
        task = await container.start()
        status = await asyncio.wait_for(task.wait(), 60)
        assert status.oom_killed, status
        assert status.exit_code == 137
        await container.delete()

    asyncio.run(main())


def test_no_log_driver(rig: Rig) -> None:
    async def main() -> None:
        opts = rig.options("nolog", rig.bundle("nolog", ["echo", "hi"]), log_path=None)
        container = await ConmonBackend().create(opts)
        task = await container.start()
        assert (await task.wait()).exit_code == 0
        assert task.log_path is None
        await container.delete()

    asyncio.run(main())


async def _recv_until(sock: socket.socket, want: bytes, timeout: float = 10) -> bytes:
    loop = asyncio.get_running_loop()
    got = b""
    deadline = loop.time() + timeout
    while want not in got:
        packet = await asyncio.wait_for(loop.sock_recv(sock, 65536), deadline - loop.time())
        if not packet:
            break
        assert packet[0] in (STREAM_STDOUT, STREAM_STDERR)
        got += packet[1:]
    return got


def test_exec_attach_stdin_round_trip(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "att1", ["sleep", "100"])
        streams: list[AttachStream] = []

        async def attach(stream: AttachStream) -> None:
            streams.append(stream)

        spec = {**EXEC_BASE, "args": ["cat"]}
        proc = await task.exec("cat", spec, stdin=True, attach_ready=attach)
        (stream,) = streams
        try:
            assert await stream.send(b"hello\n")
            got = b""
            while b"hello\n" not in got:
                chunk = await asyncio.wait_for(stream.recv(), 20)
                assert chunk is not None and chunk[0] == STREAM_STDOUT
                got += chunk[1]
            stream.close_stdin()  # hang up stdin: cat sees EOF
            assert (await asyncio.wait_for(proc.wait(), 20)).exit_code == 0
            assert await asyncio.wait_for(stream.recv(), 20) is None  # the output ended
        finally:
            stream.close()
        await task.kill(signal.SIGKILL)
        await task.wait()
        await task.container.delete()

    asyncio.run(main())


def test_close_stdin_of_the_init_process(rig: Rig) -> None:
    async def main() -> None:
        opts = rig.options(
            "stdin1",
            rig.bundle("stdin1", ["sh", "-c", "cat; echo eof"]),
            stdio=StdioOptions(stdin=True, stdin_once=True),
        )
        container = await ConmonBackend().create(opts)
        task = await container.start()
        await asyncio.sleep(0.2)
        assert task.exit_status() is None
        await task.close_stdin()
        assert (await asyncio.wait_for(task.wait(), 20)).exit_code == 0
        assert read_log(opts.log_path or "") == [("stdout", b"eof\n")]
        await container.delete()

    asyncio.run(main())


def test_resize_tty(rig: Rig) -> None:
    async def main() -> None:
        opts = rig.options(
            "rsz1",
            rig.bundle("rsz1", ["sh", "-c", "sleep 1; stty size"], tty=True),
            stdio=StdioOptions(tty=True),
        )
        container = await ConmonBackend().create(opts)
        task = await container.start()
        await task.resize(100, 30)
        assert (await asyncio.wait_for(task.wait(), 20)).exit_code == 0
        assert [d.strip() for _, d in read_log(opts.log_path or "")] == [b"30 100"]
        await container.delete()

    asyncio.run(main())


def test_update_and_stats(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "upd1", ["sleep", "100"])
        await task.update({"memory": {"limit": 64 * 1024 * 1024}})
        limits = [
            os.path.join(p, "memory.limit_in_bytes")
            for p in rig.cgroup_dirs("upd1")
            if os.path.exists(os.path.join(p, "memory.limit_in_bytes"))
        ]
        if limits:  # cgroup v1
            with open(limits[0]) as f:
                assert int(f.read()) == 64 * 1024 * 1024
        stats = await task.stats()
        assert "memory" in stats and "pids" in stats
        await task.kill(signal.SIGKILL, all=True)
        assert (await task.wait()).exit_code == 137
        await task.container.delete()

    asyncio.run(main())


def test_start_through_the_exec_fifo(rig: Rig) -> None:
    """runc's ``start`` done in-process: the process runs, runc sees it running, the FIFO
    is gone and the output reaches the log."""

    async def main() -> None:
        backend = ConmonBackend()
        cid = "fifo1"
        fifo = os.path.join(rig.runc_root, cid, "exec.fifo")
        opts = rig.options(cid, rig.bundle(cid, ["sh", "-c", "echo started; sleep 30"]))
        opts = dataclasses.replace(opts, exec_fifo=fifo)
        container = await backend.create(opts)
        assert os.path.exists(fifo)  # where runc create leaves it
        task = await container.start()
        assert not os.path.exists(fifo)
        assert (await task.state()).status == TaskStatus.RUNNING
        assert opts.log_path is not None
        deadline = time.monotonic() + 10
        while read_log(opts.log_path) != [("stdout", b"started\n")]:
            assert time.monotonic() < deadline, read_log(opts.log_path)
            await asyncio.sleep(0.05)
        await task.kill(signal.SIGKILL)
        assert (await task.wait()).exit_code == 137
        await container.delete()

    asyncio.run(main())


def test_exec_fifo_elsewhere_falls_back_to_the_runtime(rig: Rig) -> None:
    async def main() -> None:
        backend = ConmonBackend()
        cid = "fifo2"
        opts = rig.options(cid, rig.bundle(cid, ["sh", "-c", "exit 4"]))
        opts = dataclasses.replace(opts, exec_fifo=os.path.join(rig.root, "no-such.fifo"))
        container = await backend.create(opts)
        task = await container.start()  # through ``runc start``
        assert (await task.wait()).exit_code == 4
        await container.delete()

    asyncio.run(main())


# ------------------------------------------------------------------ direct exec (no monitor)


async def _collect(stream: AttachStream) -> dict[int, bytes]:
    got = {STREAM_STDOUT: b"", STREAM_STDERR: b""}
    while (chunk := await asyncio.wait_for(stream.recv(), 20)) is not None:
        got[chunk[0]] += chunk[1]
    return got


def test_attached_exec_without_tty_runs_without_a_monitor(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "dx1", ["sleep", "100"])
        streams: list[AttachStream] = []

        async def attach(stream: AttachStream) -> None:
            streams.append(stream)

        spec = {**EXEC_BASE, "args": ["sh", "-c", "echo out; echo err >&2; exit 3"]}
        proc = await task.exec("dx", spec, attach_ready=attach)
        assert type(proc).__name__ == "DirectExecProcess"
        assert proc.pid > 0
        got = await _collect(streams[0])
        assert got == {STREAM_STDOUT: b"out\n", STREAM_STDERR: b"err\n"}
        assert (await asyncio.wait_for(proc.wait(), 20)).exit_code == 3
        await proc.release()
        assert not os.path.exists(os.path.join(task.container.paths.dir, "x", "dx"))

        # signals reach the process itself; the status says which one ended it
        for sig, code in ((signal.SIGTERM, 143), (signal.SIGKILL, 137)):
            streams.clear()
            sleeper = await task.exec(
                f"s{sig}", {**EXEC_BASE, "args": ["sleep", "50"]}, attach_ready=attach
            )
            await sleeper.kill(sig)
            assert (await asyncio.wait_for(sleeper.wait(), 20)).exit_code == code
            streams[0].close()
        assert (await task.state()).status == TaskStatus.RUNNING
        await task.kill(signal.SIGKILL)
        await task.wait()
        await task.container.delete()

    asyncio.run(main())


def test_direct_exec_start_failure_is_an_error_not_output(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "dx2", ["sleep", "100"])
        streams: list[AttachStream] = []

        async def attach(stream: AttachStream) -> None:
            streams.append(stream)

        with pytest.raises(SystemFailure, match="executable file not found"):
            await task.exec("nope", {**EXEC_BASE, "args": ["nosuchcmd"]}, attach_ready=attach)
        assert streams == []
        assert not os.path.exists(os.path.join(task.container.paths.dir, "x", "nope"))
        await task.kill(signal.SIGKILL)
        await task.wait()
        with pytest.raises(Conflict):
            await task.exec("late", {**EXEC_BASE, "args": ["true"]}, attach_ready=attach)
        await task.container.delete()

    asyncio.run(main())


def test_direct_exec_output_nobody_reads_does_not_block_the_process(rig: Rig) -> None:
    async def main() -> None:
        task, _ = await run_container(rig, "dx3", ["sleep", "100"])
        streams: list[AttachStream] = []

        async def attach(stream: AttachStream) -> None:
            streams.append(stream)

        # 4 MB, far more than a pipe holds; the reader goes away after the first chunk
        spec = {**EXEC_BASE, "args": ["sh", "-c", "head -c 4000000 /dev/zero"]}
        proc = await task.exec("big", spec, attach_ready=attach)
        assert await asyncio.wait_for(streams[0].recv(), 20) is not None
        streams[0].close()
        assert (await asyncio.wait_for(proc.wait(), 20)).exit_code == 0
        await task.kill(signal.SIGKILL)
        await task.wait()
        await task.container.delete()

    asyncio.run(main())


def test_direct_exec_whose_attach_fails_still_has_its_output_drained(rig: Rig) -> None:
    """The caller's attach_ready fails (a client gone): the error propagates, and the
    process's output is still read to its end, so a chatty process finishes."""

    async def main() -> None:
        task, _ = await run_container(rig, "dx4", ["sleep", "100"])

        async def attach(stream: AttachStream) -> None:
            raise ConnectionResetError("the client went away")

        spec = {**EXEC_BASE, "args": ["sh", "-c", "head -c 4000000 /dev/zero; touch /done"]}
        with pytest.raises(ConnectionResetError):
            await task.exec("gone", spec, attach_ready=attach)
        done = os.path.join(rig.root, "dx4", "rootfs", "done")
        for _ in range(200):
            if os.path.exists(done):
                break
            await asyncio.sleep(0.05)
        assert os.path.exists(done), "the process blocked on a pipe nobody reads"
        await task.kill(signal.SIGKILL)
        await task.wait()
        await task.container.delete()

    asyncio.run(main())
