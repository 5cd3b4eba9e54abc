"""The foundation issue's "Shows", against real whaled daemons."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess, unix_request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def validate(config_text: str | None, *args: str, tmp: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "whaled", "--validate", *args]
    if config_text is not None:
        path = os.path.join(tmp, "daemon.json")
        with open(path, "w") as f:
            f.write(config_text)
        argv += ["--config-file", path]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)


# -- whaled --validate -------------------------------------------------------------------


def test_validate_good_file(tmp_path: Any) -> None:
    good = json.dumps(
        {
            "debug": True,
            "labels": ["a=b"],
            "max-concurrent-downloads": 5,
            "runtimes": {"custom": {"path": "runc", "runtimeArgs": ["--debug"]}},
            "default-runtime": "custom",
        }
    )
    result = validate(good, tmp=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configuration OK"


@pytest.mark.parametrize(
    ("text", "args", "needle"),
    [
        (
            '{"debug": true, "no-such-key": 1}',
            (),
            "don't match any configuration option: no-such-key",
        ),
        (
            '{"debug": true}',
            ("--debug",),
            "specified both as a flag and in the configuration file: debug",
        ),
        ('{"max-concurrent-downloads": "three"}', (), '"max-concurrent-downloads"'),
        ('{"shutdown-timeout": -7}', (), "invalid shutdown-timeout: -7"),
        ('{"default-runtime": "ghost"}', (), "specified default runtime 'ghost' does not exist"),
        (
            '{"runtimes": {"runc": {"path": "/usr/sbin/runc"}}}',
            (),
            "runtime name 'runc' is reserved",
        ),
        (
            '{"runtimes": {"x": {"path": "/nonexistent/rt"}}}',
            (),
            '"/nonexistent/rt" is not an executable',
        ),
        ('{"debug": tru', (), "invalid JSON"),
    ],
)
def test_validate_bad_file(tmp_path: Any, text: str, args: tuple[str, ...], needle: str) -> None:
    result = validate(text, *args, tmp=str(tmp_path))
    assert result.returncode == 1
    assert needle in result.stderr
    assert "configuration OK" not in result.stdout


def test_validate_missing_explicit_file_fails(tmp_path: Any) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "whaled",
            "--validate",
            "--config-file",
            str(tmp_path / "none.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr


# -- the API skeleton ---------------------------------------------------------------------


def test_docker_cli_version_info_and_events(whaled: WhaledProcess) -> None:
    with DockerCLI(whaled.sock) as cli:
        version = cli.run("version", "--format", "{{json .Server}}")
        server = json.loads(version.stdout)
        assert server["ApiVersion"] == "1.45"
        assert server["MinAPIVersion"] == "1.24"
        assert any(c["Name"] == "Engine" for c in server["Components"])
        text = cli.run("version").stdout
        assert "Server: whaled" in text and "API version:       1.45" in text
        info = cli.run("info")
        assert info.returncode == 0
        assert "Server Version:" in info.stdout and "Cgroup Version:" in info.stdout
        events = cli.popen("system", "events", "--format", "{{json .}}")
        try:
            time.sleep(1.0)
            whaled.reload()
            assert events.stdout is not None
            line = events.stdout.readline()
            event = json.loads(line)
            assert event["Type"] == "daemon" and event["Action"] == "reload"
        finally:
            events.kill()
            events.wait()


def test_raw_status_codes_and_headers(whaled: WhaledProcess) -> None:
    status, headers, body = whaled.request("GET", "/v1.99/version")
    assert status == 400
    assert json.loads(body) == {
        "message": "client version 1.99 is too new. Maximum supported API version is 1.45"
    }
    status, _, body = whaled.request("GET", "/v1.12/version")
    assert status == 400 and "is too old" in json.loads(body)["message"]
    status, headers, body = whaled.request("GET", "/nope")
    assert status == 404 and json.loads(body) == {"message": "page not found"}
    assert headers["Content-Type"] == "application/json"
    for path in ("/_ping", "/v1.45/_ping", "/v1.24/_ping"):
        status, headers, body = whaled.request("GET", path)
        assert (status, body) == (200, b"OK")
    status, headers, body = whaled.request("HEAD", "/_ping")
    assert status == 200 and body == b""
    for name, value in (
        ("Api-Version", "1.45"),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
    ):
        assert headers[name] == value
    assert headers["Server"].startswith("whaled/")
    assert "no-cache" in headers["Cache-Control"]
    for path in ("/version", "/v1.40/info"):
        status, headers, body = whaled.request("GET", path)
        assert status == 200 and headers["Api-Version"] == "1.45"
        assert "no-cache" in headers["Cache-Control"]
        json.loads(body)


def test_docker_py_ping_version_info(docker_client: Any) -> None:
    assert docker_client.ping() is True
    version = docker_client.version()
    assert version["ApiVersion"] == "1.45"
    info = docker_client.info()
    assert info["Containers"] == 0 and info["DefaultRuntime"] == "runc"
    assert "runc" in info["Runtimes"]
    assert info["CgroupVersion"] in ("1", "2")
    assert info["NCPU"] >= 1 and info["MemTotal"] > 0


def test_pings_never_wait_for_a_stalled_events_client(whaled: WhaledProcess) -> None:
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(whaled.sock)
    stalled.sendall(b"GET /events HTTP/1.1\r\nHost: whaled\r\n\r\n")
    try:
        for _ in range(30):  # events the stalled client never reads
            whaled.reload()

        def ping(_: int) -> tuple[int, bytes]:
            status, _h, body = unix_request(whaled.sock, "GET", "/_ping", timeout=20)
            return status, body

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(ping, range(200)))
        assert results == [(200, b"OK")] * 200
        info = json.loads(whaled.request("GET", "/info")[2])
        assert info["NEventsListener"] >= 1
    finally:
        stalled.close()


def test_events_since_until_and_filters(whaled: WhaledProcess) -> None:
    start = time.time()
    whaled.reload()
    deadline = time.time() + 10
    body = b""
    while time.time() < deadline:
        until = f"{time.time():.9f}"
        status, _, body = whaled.request("GET", f"/events?since={start - 1:.9f}&until={until}")
        assert status == 200
        if body:
            break
        time.sleep(0.2)
    events = [json.loads(line) for line in body.splitlines()]
    assert events and events[0]["Type"] == "daemon" and events[0]["Action"] == "reload"
    assert events[0]["Actor"]["Attributes"]["name"]
    # a filter that matches nothing, and one that matches
    filters = quote(json.dumps({"type": ["container"]}))
    status, _, body = whaled.request(
        "GET", f"/events?since={start - 1:.9f}&until={time.time():.9f}&filters={filters}"
    )
    assert status == 200 and body == b""
    filters = quote(json.dumps({"type": {"daemon": True}, "event": {"reload": True}}))
    status, _, body = whaled.request(
        "GET", f"/events?since={start - 1:.9f}&until={time.time():.9f}&filters={filters}"
    )
    assert status == 200 and len(body.splitlines()) == 1
    status, _, body = whaled.request("GET", "/events?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D")
    assert status == 400 and json.loads(body)["message"] == "invalid filter 'bogus'"
    status, _, body = whaled.request("GET", "/events?since=yesterday")
    assert status == 400


# -- config reload through SIGHUP -----------------------------------------------------------


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_sighup_reloads_or_changes_nothing(whaled: WhaledProcess, docker_client: Any) -> None:
    before = docker_client.info()
    whaled.write_config({"labels": ["team=whale"], "debug": True, "mtu": 1400})
    whaled.reload()
    info = wait_for(lambda: (i := docker_client.info())["Labels"] == ["team=whale"] and i)
    assert info["Debug"] is True
    assert info["Labels"] != before["Labels"]
    log = whaled.log_text()
    assert "Reloaded configuration" in log and "only applied at restart: mtu" in log
    whaled.write_config('{"labels": ["broken"')
    whaled.reload()
    wait_for(lambda: "Error reloading the configuration" in whaled.log_text())
    after = docker_client.info()
    assert after["Labels"] == ["team=whale"] and after["Debug"] is True


# -- process life: pidfile, sockets, shutdown, TCP/TLS ------------------------------------------


def test_second_daemon_with_same_pidfile_is_refused(
    whaled: WhaledProcess, whaled_factory: Any
) -> None:
    other = whaled_factory(wait=False, extra_args=[])
    other.stop()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "whaled",
            "-H",
            f"unix://{other.sock}",
            "--pidfile",
            whaled.pidfile,
            "--data-root",
            other.data_root,
            "--exec-root",
            other.exec_root,
            "--config-file",
            other.config_path,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "pid file found, ensure whaled is not running" in result.stderr
    assert whaled.request("GET", "/_ping")[0] == 200


def test_socket_mode_and_clean_shutdown(whaled: WhaledProcess) -> None:
    mode = stat.S_IMODE(os.stat(whaled.sock).st_mode)
    assert mode == 0o660
    with open(whaled.pidfile) as f:
        assert int(f.read()) == whaled.pid
    assert whaled.stop() == 0
    assert not os.path.exists(whaled.sock)
    assert not os.path.exists(whaled.pidfile)


def test_sigint_also_stops_cleanly(whaled: WhaledProcess) -> None:
    whaled.signal(signal.SIGINT)
    wait_for(lambda: not whaled.running, timeout=20)
    assert whaled.returncode == 0
    assert not os.path.exists(whaled.sock)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_plain_tcp_on_loopback(whaled_factory: Any) -> None:
    port = _free_port()
    w = whaled_factory(extra_args=["-H", f"tcp://127.0.0.1:{port}", "--tls=false"])
    import docker

    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{port}", version="1.45")
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert w.request("GET", "/_ping")[0] == 200  # the fixture's unix socket too


def test_plain_tcp_on_all_addresses_is_refused(tmp_path: Any) -> None:
    result = validate(None, "-H", "tcp://0.0.0.0:2375", tmp=str(tmp_path))
    assert result.returncode == 1 and "--tls=false" in result.stderr
    result = validate(None, "-H", "tcp://0.0.0.0:2375", "--tls=false", tmp=str(tmp_path))
    assert result.returncode == 0


def _make_certs(d: str) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=whaled-test-ca",
    )
    for name, cn in (("server", "127.0.0.1"), ("client", "client")):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}-key.pem",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
        )
        ext = f"{name}.ext"
        with open(os.path.join(d, ext), "w") as f:
            f.write(
                "subjectAltName=IP:127.0.0.1\n"
                if name == "server"
                else "extendedKeyUsage=clientAuth\n"
            )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            ext,
        )


def test_tlsverify_requires_client_certificates(whaled_factory: Any, tmp_path: Any) -> None:
    import docker
    import docker.tls

    certs = str(tmp_path)
    _make_certs(certs)
    port = _free_port()
    whaled_factory(
        extra_args=[
            "-H",
            f"tcp://127.0.0.1:{port}",
            "--tlsverify",
            "--tlscacert",
            f"{certs}/ca.pem",
            "--tlscert",
            f"{certs}/server.pem",
            "--tlskey",
            f"{certs}/server-key.pem",
        ]
    )
    good = docker.tls.TLSConfig(
        client_cert=(f"{certs}/client.pem", f"{certs}/client-key.pem"),
        ca_cert=f"{certs}/ca.pem",
        verify=True,
    )
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{port}", tls=good, version="1.45")
    client.api.trust_env = False  # REQUESTS_CA_BUNDLE would override the test CA
    try:
        assert client.version()["ApiVersion"] == "1.45"
    finally:
        client.close()
    no_cert = docker.tls.TLSConfig(ca_cert=f"{certs}/ca.pem", verify=True)
    client = docker.DockerClient(
        base_url=f"tcp://127.0.0.1:{port}", tls=no_cert, version="1.45", timeout=10
    )
    client.api.trust_env = False
    try:
        with pytest.raises(Exception):  # noqa: B017 - the TLS handshake must fail
            client.ping()
    finally:
        client.close()


def _reload_cmd(w: WhaledProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "whaled",
            "reload",
            "--config-file",
            w.config_path,
            "-H",
            w.url,
            "--pidfile",
            w.pidfile,
            "--timeout",
            "20",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_whaled_reload_command_reports_the_outcome(whaled: WhaledProcess) -> None:
    whaled.write_config({"labels": ["x=1"], "max-concurrent-uploads": 2, "mtu": 1400})
    result = _reload_cmd(whaled)
    assert result.returncode == 0, result.stderr
    assert 'labels=["x=1"]' in result.stdout and "max-concurrent-uploads=2" in result.stdout
    assert "only applied at restart: mtu" in result.stdout
    whaled.write_config({"labels": ["x=1"], "unknown-key": True})
    result = _reload_cmd(whaled)
    assert result.returncode == 1 and "unknown-key" in result.stderr
    # valid on its own, but clashes with a start-up flag: only the daemon can tell
    whaled.write_config({"pidfile": "/tmp/elsewhere.pid"})
    result = _reload_cmd(whaled)
    assert result.returncode == 1
    assert "reload failed, nothing changed" in result.stderr and "pidfile" in result.stderr
    info = json.loads(whaled.request("GET", "/info")[2])
    assert info["Labels"] == ["x=1"]
