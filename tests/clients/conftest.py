"""The ecosystem's own clients against a real whaled. testcontainers reads its settings when
it is imported, so they are set here, before any test module imports it:

- no Ryuk reaper (its image would come from the internet; the fixtures clean up instead);
- the host to reach mapped ports is 127.0.0.1: this machine has a ``/.dockerenv``, and
  testcontainers would otherwise take itself for a container and connect to the default
  gateway's address, off loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
os.environ["TC_HOST"] = "127.0.0.1"
os.environ["TESTCONTAINERS_CONNECTION_MODE"] = "docker_host"

from tests.integration.conftest import (
    busybox_image,
    busybox_tar,
    docker_cli,
    whaled,
    whaled_factory,
)
from tests.support.whaled_proc import WhaledProcess

__all__ = ["busybox_image", "busybox_tar", "docker_cli", "whaled", "whaled_factory"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="client tests need root (they run a real whaled)")
        for item in items:
            if str(item.path).startswith(here + os.sep):
                item.add_marker(skip)


@pytest.fixture
def docker_host(whaled: WhaledProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``DOCKER_HOST`` pointing at the fixture's whaled (clients read it from the
    environment)."""
    url = f"unix://{whaled.sock}"
    monkeypatch.setenv("DOCKER_HOST", url)
    yield url
