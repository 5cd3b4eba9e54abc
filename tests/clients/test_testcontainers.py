"""testcontainers (Python, pinned) drives whaled as it drives dockerd: containers with
mapped ports reached from the host, log waits, exec, environment, volumes, a network on
which two containers talk by alias, an image built from a path, and a generic server."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

BUSYBOX = "busybox:latest"


def test_ports_logs_exec_env_and_volumes(
    docker_host: str, busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("hello from whaled\n")
    server = (
        DockerContainer(BUSYBOX)
        .with_command("sh -c 'echo ready; httpd -f -p 8080 -h /www'")
        .with_exposed_ports(8080)
        .with_env("GREETING", "hi")
        .with_volume_mapping(str(tmp_path), "/www", "ro")
        .waiting_for(LogMessageWaitStrategy("ready"))
    )
    with server:
        host = server.get_container_host_ip()
        port = int(server.get_exposed_port(8080))
        assert host == "127.0.0.1" and port > 0
        with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=10) as resp:
            assert resp.read() == b"hello from whaled\n"
        code, out = server.exec(["sh", "-c", "echo $GREETING"])
        assert code == 0 and out == b"hi\n"
        wrapped = server.get_wrapped_container()
        wrapped.reload()
        assert wrapped.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"] == str(port)


def test_two_containers_talk_by_alias_on_a_network(docker_host: str, busybox_image: str) -> None:
    with Network() as network:
        server = (
            DockerContainer(BUSYBOX)
            .with_command("sh -c 'echo up; while true; do echo pong | nc -l -p 7000; done'")
            .with_network(network)
            .with_network_aliases("backend")
            .waiting_for(LogMessageWaitStrategy("up"))
        )
        with server:
            client = DockerContainer(BUSYBOX).with_command("sh -c 'sleep 60'").with_network(network)
            with client:
                code, out = client.exec(["nc", "-w", "5", "backend", "7000"])
                assert code == 0 and out == b"pong\n"


def test_an_image_built_from_a_path(docker_host: str, busybox_image: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox:latest\nRUN echo built > /built\nCMD ["sh", "-c", "cat /built; sleep 30"]\n'
    )
    with DockerImage(path=str(tmp_path), tag="tc-built:1") as image:
        container = DockerContainer(str(image)).waiting_for(LogMessageWaitStrategy("built"))
        with container:
            assert container.get_wrapped_container().attrs["Config"]["Image"] == "tc-built:1"
