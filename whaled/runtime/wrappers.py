"""Runtime wrapper scripts on disk: written once, never modified or deleted while running.

The file name is the SHA-256 of the contents, so an existing file with that name is already
correct: no locking, no rewriting. Stale wrappers are removed only at daemon start
(``remove_unreferenced``), keeping those a live-restored container still runs on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

from whaled.osutil.atomic import atomic_write
from whaled.runtime.registry import Wrapper

log = logging.getLogger("whaled.runtime")


def ensure_wrapper(directory: str, wrapper: Wrapper) -> str:
    """Write ``wrapper`` under ``directory`` unless a file of that name exists (then it is
    already correct); return its path. Safe to call concurrently for the same wrapper: each
    writer renames its own complete temp file into place."""
    path = os.path.join(directory, wrapper.name)
    if not os.path.exists(path):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        atomic_write(path, wrapper.content, 0o700)
    return path


def ensure_wrappers(directory: str, wrappers: Sequence[Wrapper]) -> list[str]:
    """``ensure_wrapper`` for each; return the names of the files this call created."""
    created = []
    for wrapper in wrappers:
        if not os.path.exists(os.path.join(directory, wrapper.name)):
            ensure_wrapper(directory, wrapper)
            created.append(wrapper.name)
    return created


def remove_unreferenced(directory: str, referenced: Iterable[str]) -> list[str]:
    """Delete the wrappers no running container references; return what was removed."""
    keep = {os.path.basename(p) for p in referenced if os.path.dirname(p) == directory}
    removed = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        if name in keep:
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed.append(name)
        except OSError as e:
            log.warning("cannot remove stale runtime wrapper %s: %s", name, e)
    if removed:
        log.info("removed %d stale runtime wrapper(s)", len(removed))
    return sorted(removed)
