"""Robustness harness (issue 17): the same real-daemon fixtures as the integration tests
(``whaled``, ``whaled_factory``, ``docker_client``, ``docker_api``, ``docker_cli``,
``busybox_tar``, ``busybox_image``), so that a hostile-input test reads like any other.

``make test`` runs the bounded modes; ``make robustness-long`` sets ``WHALED_ROBUSTNESS_LONG=1``
for the long ones (more fuzz cases, more kills, a longer load)."""

from __future__ import annotations

import os

from tests.integration.conftest import (  # noqa: F401  (fixtures and hooks, re-exported)
    busybox_image,
    busybox_tar,
    docker_api,
    docker_cli,
    docker_client,
    pytest_runtest_makereport,
    whaled,
    whaled_factory,
)

LONG = os.environ.get("WHALED_ROBUSTNESS_LONG") == "1"
