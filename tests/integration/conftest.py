"""Integration fixtures: real whaled daemons in temp roots, driven by docker-py and the CLI.

- ``whaled``: one started, ready daemon per test. Its ``daemon.json`` comes from
  ``@pytest.mark.whaled_config({...})`` (or ``whaled_config(key=value)``) or an indirect
  parameter (``@pytest.mark.parametrize("whaled", [{...}], indirect=True)``); extra flags from
  ``@pytest.mark.whaled_args("--flag", "value")``.
- ``whaled_factory(config=None, extra_args=(), *, wait=True, timeout=20.0)``: start more.
- ``docker_client`` / ``docker_api`` / ``docker_cli``: docker-py ``DockerClient`` /
  ``APIClient`` / ``DockerCLI`` for ``whaled``.
- ``busybox_tar`` (session): path of the busybox rootfs tar; ``busybox_image``: that tar
  imported into ``whaled`` as ``busybox:latest``.

Every daemon started here is cleaned up at teardown, also when the test or its start fails;
when a test fails, the tail of each daemon's log is added to the failure report.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.support.busybox import busybox_available, busybox_tar_cached
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

HERE = Path(__file__).resolve().parent
BUSYBOX_IMAGE = "busybox:latest"
_DAEMONS = pytest.StashKey[list[WhaledProcess]]()


class WhaledFactory(Protocol):
    def __call__(
        self,
        config: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        *,
        wait: bool = True,
        timeout: float = 20.0,
        python: str | None = None,
    ) -> WhaledProcess: ...


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    not_root = os.geteuid() != 0
    skip = pytest.mark.skip(
        reason="integration tests need root (whaled mounts, makes namespaces, runs runc)"
    )
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
            if not_root:
                item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for w in item.stash.get(_DAEMONS, []):
            report.sections.append((f"whaled log ({w.root})", w.log_tail(200)))
    return report


@pytest.fixture
def whaled_factory(request: pytest.FixtureRequest) -> Iterator[WhaledFactory]:
    started: list[WhaledProcess] = []
    request.node.stash[_DAEMONS] = started

    def start(
        config: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        *,
        wait: bool = True,
        timeout: float = 20.0,
        python: str | None = None,
    ) -> WhaledProcess:
        # ``python``: the interpreter (or a wrapper that execs one) running ``-m whaled``.
        w = WhaledProcess(config, extra_args, **({"python": python} if python else {}))
        started.append(w)  # registered before start: cleaned up even if start fails
        w.start()
        if wait:
            w.wait_ready(timeout)
        return w

    yield start
    errors: list[BaseException] = []
    for w in reversed(started):
        try:
            w.cleanup()
        except Exception as e:  # keep cleaning the others
            errors.append(e)
    if errors:
        raise errors[0]


def _config_from(request: pytest.FixtureRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, Mapping):
            raise TypeError(f"indirect `whaled` param must be a dict, got {param!r}")
        config.update(param)
    marker = request.node.get_closest_marker("whaled_config")
    if marker is not None:
        for arg in marker.args:
            config.update(arg)
        config.update(marker.kwargs)
    return config


@pytest.fixture
def whaled(request: pytest.FixtureRequest, whaled_factory: WhaledFactory) -> WhaledProcess:
    marker = request.node.get_closest_marker("whaled_args")
    args = [str(a) for a in marker.args] if marker is not None else []
    return whaled_factory(_config_from(request), args)


@pytest.fixture
def docker_client(whaled: WhaledProcess) -> Any:
    """docker-py ``DockerClient`` (API 1.45) of the ``whaled`` fixture."""
    return whaled.client()


@pytest.fixture
def docker_api(whaled: WhaledProcess) -> Any:
    """docker-py low-level ``APIClient`` (API 1.45) of the ``whaled`` fixture."""
    return whaled.api()


@pytest.fixture
def docker_cli(whaled: WhaledProcess) -> Iterator[DockerCLI]:
    with DockerCLI(whaled.sock) as cli:
        yield cli


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not busybox_available():
        pytest.skip("/bin/busybox missing: install Debian's busybox-static (make sys-deps)")
    return busybox_tar_cached(tmp_path_factory)


@pytest.fixture
def busybox_image(whaled: WhaledProcess, busybox_tar: str) -> str:
    """``busybox:latest`` imported into ``whaled``; returns the reference."""
    whaled.import_image(busybox_tar, BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE
