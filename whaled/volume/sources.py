"""Bind sources on the host (dockerd's rules): a ``--mount type=bind`` source must exist at
create; a missing ``-v /host/path:/path`` source directory is created at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from whaled.errors import InvalidParameter


def check_bind_sources(hc: Mapping[str, Any]) -> None:
    """``--mount type=bind`` needs an existing source (dockerd's 400 and message)."""
    for m in hc.get("Mounts") or []:
        source = str(m.get("Source") or "")
        if m.get("Type") == "bind" and source and not os.path.exists(source):
            raise InvalidParameter(
                f'invalid mount config for type "bind": bind source path does not exist: {source}'
            )


def create_bind_sources(hc: Mapping[str, Any]) -> None:
    """``-v /host/path:/path`` creates a missing host directory at start, as dockerd does."""
    for bind in hc.get("Binds") or []:
        source = str(bind).split(":", 1)[0]
        if source.startswith("/") and not os.path.lexists(source):
            os.makedirs(source, 0o755, exist_ok=True)
