"""The containers issue's "Shows" with the real docker CLI against a real whaled."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time

import pytest

from tests.integration.container.helpers import is_zombie, poll
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

RUN = ("run", "--network", "none")


def test_run_rm_echo_hi(whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str) -> None:
    done = docker_cli.run(*RUN, "--rm", busybox_image, "echo", "hi")
    assert done.stdout == "hi\n"
    assert docker_cli.run("ps", "-aq").stdout.strip() == ""


def test_exit_code_propagates(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    done = docker_cli.run(*RUN, "--rm", busybox_image, "sh", "-c", "exit 7", check=False)
    assert done.returncode == 7
    missing = docker_cli.run(*RUN, "--rm", busybox_image, "nope-not-here", check=False)
    assert missing.returncode == 127, missing.stderr


def test_stdin_pipes_through_cat(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    done = docker_cli.run(*RUN, "--rm", "-i", busybox_image, "cat", input="hi\nthere\n")
    assert done.stdout == "hi\nthere\n"


def _pty_run(argv: list[str], env: dict[str, str], timeout: float = 30) -> tuple[int, bytes]:
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(argv[0], argv, env)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            else:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    pid = 0
                    break
    finally:
        status = 0
        if pid:
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status) if pid else 0, out


def test_run_it_tty_prints_a_pts_path(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    _, out = _pty_run(docker_cli.argv(*RUN, "--rm", "-it", busybox_image, "tty"), docker_cli.env())
    assert b"/dev/pts/" in out, out


def test_exec_it_and_exec_exit_codes(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(*RUN, "-d", busybox_image, "sleep", "300").stdout.strip()
    assert docker_cli.run("exec", cid, "echo", "inside").stdout == "inside\n"
    assert docker_cli.run("exec", cid, "sh", "-c", "exit 3", check=False).returncode == 3
    _, out = _pty_run(docker_cli.argv("exec", "-it", cid, "tty"), docker_cli.env())
    assert b"/dev/pts/" in out, out
    env = docker_cli.run("exec", "-e", "FOO=bar", "-w", "/tmp", cid, "sh", "-c", "echo $FOO; pwd")
    assert env.stdout == "bar\n/tmp\n"
    assert docker_cli.run("exec", "-u", "65534", cid, "id", "-u").stdout.strip() == "65534"
    docker_cli.run("rm", "-f", cid)


def test_logs_follow_stops_when_the_container_exits(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(
        *RUN, "-d", busybox_image, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"
    ).stdout.strip()
    proc = docker_cli.popen("logs", "-f", cid)
    out, _ = proc.communicate(timeout=30)
    assert out == b"line1\nline2\nline3\n"
    assert proc.returncode == 0
    tail = docker_cli.run("logs", "--tail", "1", cid).stdout
    assert tail == "line3\n"
    stamped = docker_cli.run("logs", "-t", cid).stdout.splitlines()
    assert stamped[0].endswith(" line1") and "T" in stamped[0].split()[0]
    docker_cli.run("rm", cid)


def test_logs_split_stdout_and_stderr(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(
        *RUN, "-d", busybox_image, "sh", "-c", "echo out; echo err >&2"
    ).stdout.strip()
    docker_cli.run("wait", cid)
    done = docker_cli.run("logs", cid)
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"
    docker_cli.run("rm", cid)


def test_cp_both_ways(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: os.PathLike[str]
) -> None:
    cid = docker_cli.run(*RUN, "-d", busybox_image, "sleep", "300").stdout.strip()
    src = os.path.join(tmp_path, "hello.txt")
    with open(src, "w") as f:
        f.write("hello from the host\n")
    docker_cli.run("cp", src, f"{cid}:/tmp/")
    assert docker_cli.run("exec", cid, "cat", "/tmp/hello.txt").stdout == "hello from the host\n"
    docker_cli.run("exec", cid, "sh", "-c", "mkdir /data && echo x > /data/y")
    dest = os.path.join(tmp_path, "back")
    docker_cli.run("cp", f"{cid}:/data", dest)
    with open(os.path.join(dest, "y")) as f:
        assert f.read() == "x\n"
    # A symlink to an absolute path resolves inside the container, never on the host.
    docker_cli.run("exec", cid, "ln", "-s", "/etc", "/tmp/etclink")
    docker_cli.run("cp", f"{cid}:/tmp/etclink/hostname", os.path.join(tmp_path, "hn"))
    with open(os.path.join(tmp_path, "hn")) as f:
        assert f.read().strip() == cid[:12]
    docker_cli.run("rm", "-f", cid)


def test_stats_no_stream_and_top(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(*RUN, "-d", "--name", "st1", busybox_image, "sleep", "300").stdout.strip()
    stats = docker_cli.run(
        "stats", "--no-stream", "--format", "{{json .}}", "st1", timeout=60
    ).stdout.strip()
    row = json.loads(stats)
    assert row["Name"] == "st1"
    assert "MiB" in row["MemUsage"] or "KiB" in row["MemUsage"]
    top = docker_cli.run("top", "st1").stdout.splitlines()
    assert "PID" in top[0]
    assert any("sleep 300" in line for line in top[1:])
    docker_cli.run("rm", "-f", cid)


def test_on_failure_2_ends_with_restart_count_2(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(
        *RUN, "-d", "--restart", "on-failure:2", busybox_image, "sh", "-c", "exit 1"
    ).stdout.strip()

    def exited_after_two_restarts() -> dict[str, object] | None:
        out = docker_cli.run("inspect", "--format", "{{json .State}}|{{.RestartCount}}", cid)
        state_json, count = out.stdout.rsplit("|", 1)
        state: dict[str, object] = json.loads(state_json)
        return state if int(count) == 2 and state["Status"] == "exited" else None

    state = poll(exited_after_two_restarts, timeout=30, interval=0.2)
    assert state["ExitCode"] == 1
    docker_cli.run("rm", cid)


def test_healthcheck_turns_healthy(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(
        *RUN,
        "-d",
        "--health-cmd",
        "true",
        "--health-interval",
        "200ms",
        busybox_image,
        "sleep",
        "300",
    ).stdout.strip()

    def healthy() -> bool:
        out = docker_cli.run("inspect", "--format", "{{.State.Health.Status}}", cid).stdout
        return out.strip() == "healthy"

    poll(healthy, timeout=20, interval=0.2)
    listed = docker_cli.run("ps", "-q", "--no-trunc", "--filter", "health=healthy").stdout
    assert cid in listed
    docker_cli.run("rm", "-f", cid)


def test_memory_hog_is_oom_killed(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    # Each loop doubles a shell variable: it crosses 32 MiB quickly.
    done = docker_cli.run(
        *RUN,
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        busybox_image,
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        check=False,
        timeout=120,
    )
    assert done.returncode == 137, done.stderr
    cid = docker_cli.run("ps", "-lq").stdout.strip()
    assert (
        docker_cli.run("inspect", "--format", "{{.State.OOMKilled}}", cid).stdout.strip() == "true"
    )
    docker_cli.run("rm", cid)


def test_pids_limit_is_enforced(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    done = docker_cli.run(
        *RUN,
        "--rm",
        # room for runc init's own threads (a Go runtime makes more of them on a busy
        # machine: with 5 the start itself could fail), far fewer than the loop forks
        "--pids-limit",
        "12",
        busybox_image,
        "sh",
        "-c",
        "for i in $(seq 24); do sleep 5 & done; wait",
        check=False,
        timeout=60,
    )
    assert "can't fork" in done.stderr or "Resource temporarily unavailable" in done.stderr, done


def test_cap_drop_all_makes_chown_fail(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    ok = docker_cli.run(*RUN, "--rm", busybox_image, "chown", "65534", "/tmp", check=False)
    assert ok.returncode == 0, ok.stderr
    denied = docker_cli.run(
        *RUN, "--rm", "--cap-drop", "ALL", busybox_image, "chown", "65534", "/tmp", check=False
    )
    assert denied.returncode != 0
    assert "Operation not permitted" in denied.stderr


@pytest.mark.whaled_config({"live-restore": True})
def test_live_restore_keeps_a_container_across_a_daemon_restart(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(
        *RUN, "-d", busybox_image, "sh", "-c", "echo before; sleep 300"
    ).stdout.strip()
    pid = int(docker_cli.run("inspect", "--format", "{{.State.Pid}}", cid).stdout)
    whaled.restart()
    assert os.path.exists(f"/proc/{pid}")
    assert docker_cli.run("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == (
        "running"
    )
    assert docker_cli.run("logs", cid).stdout == "before\n"
    assert docker_cli.run("exec", cid, "echo", "after").stdout == "after\n"
    docker_cli.run("stop", "-t", "1", cid)
    assert not os.path.exists(f"/proc/{pid}") or is_zombie(pid)
    docker_cli.run("rm", cid)


def test_without_live_restore_shutdown_stops_containers(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(*RUN, "-d", busybox_image, "sleep", "300").stdout.strip()
    pid = int(docker_cli.run("inspect", "--format", "{{.State.Pid}}", cid).stdout)
    whaled.restart()
    assert not os.path.exists(f"/proc/{pid}") or is_zombie(pid)
    assert docker_cli.run("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == (
        "exited"
    )
    docker_cli.run("rm", cid)


def test_kill9_of_the_daemon_then_restart_matches_reality(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    running = docker_cli.run(*RUN, "-d", busybox_image, "sleep", "300").stdout.strip()
    short = docker_cli.run(*RUN, "-d", busybox_image, "sh", "-c", "sleep 1").stdout.strip()
    whaled.kill9()
    time.sleep(2)  # ``short`` exits while nobody watches
    whaled.start()
    whaled.wait_ready()
    status = {
        cid: docker_cli.run("inspect", "--format", "{{.State.Status}}", cid).stdout.strip()
        for cid in (running, short)
    }
    assert status == {running: "running", short: "exited"}
    assert docker_cli.run("logs", running).stdout == ""
    docker_cli.run("rm", "-f", running, short)


def test_auto_remove_container_that_exited_while_the_daemon_was_down(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(*RUN, "-d", "--rm", busybox_image, "sleep", "1").stdout.strip()
    keep = docker_cli.run(*RUN, "-d", "--rm", busybox_image, "sleep", "300").stdout.strip()
    whaled.kill9()
    time.sleep(2)  # ``cid`` exits while nobody watches
    whaled.start()
    whaled.wait_ready()
    poll(lambda: cid not in docker_cli.run("ps", "-aq", "--no-trunc").stdout or None)
    assert docker_cli.run("inspect", "--format", "{{.State.Status}}", keep).stdout.strip() == (
        "running"
    )
    docker_cli.run("rm", "-f", keep)


def test_restart_removes_runtime_state_and_run_dirs_nobody_owns(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, busybox_tar: str
) -> None:
    """What a daemon killed between a container's removal and the end of its runtime
    clean-up leaves (runtime state of an unknown container, its run directory) is gone after
    the next start; a live container's own state stays."""
    running = docker_cli.run(*RUN, "-d", busybox_image, "sleep", "300").stdout.strip()
    whaled.kill9()
    runc = "/usr/sbin/runc"
    runc_root = os.path.join(whaled.exec_root, "runc")
    bundle = os.path.join(whaled.root, "orphan-bundle")
    os.makedirs(os.path.join(bundle, "rootfs"))
    subprocess.run(["tar", "-xf", busybox_tar, "-C", os.path.join(bundle, "rootfs")], check=True)
    subprocess.run([runc, "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["args"], spec["process"]["terminal"] = ["true"], False
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    orphan = "0f" * 32
    subprocess.run(
        [runc, "--root", runc_root, "run", "--bundle", bundle, orphan],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )  # exits at once: runtime state "stopped" stays until a delete
    run_dir = os.path.join(whaled.exec_root, "c", orphan[:16])
    os.makedirs(os.path.join(run_dir, "m"))
    whaled.start()
    whaled.wait_ready()
    state = subprocess.run([runc, "--root", runc_root, "state", orphan], capture_output=True)
    assert state.returncode != 0
    assert not os.path.exists(run_dir)
    assert os.path.isdir(os.path.join(whaled.exec_root, "c", running[:16]))
    docker_cli.run("exec", running, "true")
    docker_cli.run("rm", "-f", running)


def test_subprocess_cli_wait_and_rm_running_conflict(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cid = docker_cli.run(*RUN, "-d", busybox_image, "sleep", "300").stdout.strip()
    refused = docker_cli.run("rm", cid, check=False)
    assert refused.returncode != 0
    assert "cannot remove a running container" in refused.stderr
    docker_cli.run("kill", cid)
    assert docker_cli.run("wait", cid).stdout.strip() == "137"
    docker_cli.run("rm", cid)
    assert subprocess.run(["true"]).returncode == 0
