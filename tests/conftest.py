"""Root test configuration: import path and markers."""

from __future__ import annotations

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # `import tests.support...` from any rootdir/cwd


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "whaled_config(config): daemon.json (a dict) for the `whaled` fixture"
    )
    config.addinivalue_line(
        "markers", "whaled_args(*args): extra command-line flags for the `whaled` fixture"
    )
