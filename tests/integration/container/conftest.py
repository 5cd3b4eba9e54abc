"""Fixtures for the container tests (their shared helpers are in ``helpers.py``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

from tests.integration.container.helpers import V
from tests.support.whaled_proc import WhaledProcess


@pytest.fixture(autouse=True)
def _force_remove_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Containers a failing (or xfail) test left running would cost the daemon's stop
    timeout at teardown: remove them first (in the tests that use ``whaled``)."""
    if "whaled" not in request.fixturenames:
        yield
        return
    whaled: WhaledProcess = request.getfixturevalue("whaled")
    yield
    with contextlib.suppress(Exception):
        status, _, out = whaled.request("GET", f"{V}/containers/json?all=1", timeout=5)
        if status == 200:
            for c in json.loads(out):
                whaled.request("DELETE", f"{V}/containers/{c['Id']}?force=1", timeout=10)
