"""Swarm and plugin endpoints answer as dockerd does on a node that is not in a swarm and
has no plugins (whaled issue 12, item 13): clients and teardown scripts branch on exactly
these statuses and messages."""

from __future__ import annotations

import json
from typing import Any

import docker.errors
import pytest

from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

API = "/v1.45"
NOT_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
    "connect this node to swarm and try again."
)
NO_SWARM = "This node is not part of a swarm"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/swarm"),
        ("POST", "/swarm/update?version=1"),
        ("GET", "/swarm/unlockkey"),
        ("GET", "/nodes"),
        ("GET", "/nodes/abc"),
        ("DELETE", "/nodes/abc"),
        ("POST", "/nodes/abc/update?version=1"),
        ("GET", "/services"),
        ("GET", "/services/web"),
        ("DELETE", "/services/web"),
        ("GET", "/services/web/logs?stdout=1"),
        ("GET", "/tasks"),
        ("GET", "/tasks/abc"),
        ("GET", "/secrets"),
        ("GET", "/secrets/abc"),
        ("DELETE", "/secrets/abc"),
        ("GET", "/configs"),
        ("GET", "/configs/abc"),
        ("DELETE", "/configs/abc"),
    ],
)
def test_manager_endpoints_answer_503_not_a_manager(
    whaled: WhaledProcess, method: str, path: str
) -> None:
    for prefix in ("", API):
        status, _, body = whaled.request(method, prefix + path)
        assert (status, json.loads(body)) == (503, {"message": NOT_MANAGER}), path


@pytest.mark.parametrize(
    "path",
    ["/services/create", "/secrets/create", "/configs/create", "/swarm/unlock"],
)
def test_manager_endpoints_with_a_body_answer_503_not_a_manager(
    whaled: WhaledProcess, path: str
) -> None:
    status, _, body = whaled.request("POST", API + path, {"Name": "x"})
    assert (status, json.loads(body)) == (503, {"message": NOT_MANAGER})


def test_swarm_leave_answers_503_not_part_of_a_swarm(whaled: WhaledProcess) -> None:
    status, _, body = whaled.request("POST", f"{API}/swarm/leave?force=1")
    assert (status, json.loads(body)) == (503, {"message": NO_SWARM})


def test_list_filters_are_checked_first(whaled: WhaledProcess) -> None:
    status, _, _ = whaled.request("GET", f"{API}/nodes?filters=notjson")
    assert status == 400


def test_docker_py_sees_api_errors_with_status_503(docker_client: Any) -> None:
    with pytest.raises(docker.errors.APIError) as e:
        docker_client.nodes.list()
    assert e.value.status_code == 503 and e.value.explanation == NOT_MANAGER
    with pytest.raises(docker.errors.APIError) as e:
        docker_client.swarm.leave()
    assert e.value.status_code == 503 and e.value.explanation == NO_SWARM
    # docker-py's forced leave treats exactly this 503 as "not in a swarm: done".
    assert docker_client.swarm.leave(force=True) is True


def test_cli_node_ls_and_swarm_leave_print_dockerds_errors(docker_cli: DockerCLI) -> None:
    done = docker_cli.run("node", "ls", check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error response from daemon: {NOT_MANAGER}"
    done = docker_cli.run("swarm", "leave", check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error response from daemon: {NO_SWARM}"
    done = docker_cli.run("service", "ls", check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error response from daemon: {NOT_MANAGER}"


def test_plugins_list_is_empty_and_unknown_plugins_are_404(
    whaled: WhaledProcess, docker_client: Any, docker_cli: DockerCLI
) -> None:
    status, _, body = whaled.request("GET", f"{API}/plugins")
    assert (status, json.loads(body)) == (200, [])
    assert docker_client.plugins.list() == []
    status, _, body = whaled.request("GET", f"{API}/plugins/vieux/sshfs:latest/json")
    assert (status, json.loads(body)) == (404, {"message": 'plugin "vieux/sshfs:latest" not found'})
    status, _, _ = whaled.request("DELETE", f"{API}/plugins/sshfs")
    assert status == 404
    status, _, _ = whaled.request("POST", f"{API}/plugins/sshfs/enable")
    assert status == 404
    done = docker_cli.run("plugin", "ls", "--format", "{{.Name}}")
    assert done.stdout == ""
