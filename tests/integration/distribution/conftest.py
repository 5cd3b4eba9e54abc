"""Registries for the distribution client tests: Debian's ``docker-registry`` on random
127.0.0.1 ports, with configs the tests write, stopped by PID at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.registry import RegistryProcess, registry_available

RegistryFactory = Callable[..., RegistryProcess]


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[RegistryFactory]:
    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    started: list[RegistryProcess] = []

    def start(name: str = "registry", **kwargs: Any) -> RegistryProcess:
        reg = RegistryProcess(root=tmp_path / name, **kwargs)
        started.append(reg)
        return reg.start()

    try:
        yield start
    finally:
        for reg in started:
            reg.stop()


@pytest.fixture
def registry(registry_factory: RegistryFactory) -> RegistryProcess:
    """A plain-HTTP registry without auth."""
    return registry_factory()
