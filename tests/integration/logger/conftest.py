"""Fixtures for the logger against real conmon + runc: the runtime tests' ``rig`` (a temp
root, a private runc root, busybox bundles; leak checks at teardown), reused as is."""

from __future__ import annotations

from tests.integration.runtime.conftest import default_spec, rig, rootfs_tar

__all__ = ["default_spec", "rig", "rootfs_tar"]
