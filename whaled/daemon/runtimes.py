"""Runtimes at daemon level: the registry bound to this host, and the runtime reloader.

The registry (``whaled.runtime.registry``) is pure: it needs the paths of the built-in
runtimes, which come from the host facts probed once at start (``builtin_runtime_paths``).

``RuntimeReloader`` is the reloader of ``runtimes`` and ``default-runtime`` (DESIGN §3-4),
two phases inside the reload transaction:

- prepare (may refuse the reload): validate the new runtimes exactly as at start-up
  (reserved names, a path for each, the path is an executable file, the default runtime
  exists), then against the registry (each binary resolves, the default runtime is an
  installed built-in or a configured one); then write the wrapper scripts of the runtimes
  with arguments that do not exist yet, so they are on disk before any container can
  resolve against the new snapshot.
- rollback: nothing. A wrapper written in prepare stays: its file name is the hash of its
  contents, so it is never wrong, and a start racing with this reload may already run on
  the same file (it resolved the same runtime against another snapshot). Stale wrappers are
  removed only at the next daemon start, when nothing can be using them.
- commit: nothing but a log line. Containers resolve their runtime against the snapshot
  they take at start; running ones keep the path they locked in, whatever the new config.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Mapping

from whaled.config.reload import ReloadPlan, ReloadTransaction
from whaled.config.validate import (
    HostProbe,
    check_runtime_config,
    check_runtime_paths,
    real_host_probe,
)
from whaled.host.binaries import BinaryVersion
from whaled.runtime.registry import Wrapper, check_runtimes, runtime_changes
from whaled.runtime.wrappers import ensure_wrappers

log = logging.getLogger("whaled.runtime")

#: The daemon.json keys this reloader prepares.
RUNTIME_KEYS = frozenset({"runtimes", "default-runtime"})
#: Built-in runtime names whose binaries the host facts probe.
BUILTIN_RUNTIME_BINARIES = ("runc", "crun")


def builtin_runtime_paths(binaries: Mapping[str, BinaryVersion]) -> dict[str, str | None]:
    """Built-in runtime name → its binary on this host (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in BUILTIN_RUNTIME_BINARIES:
        b = binaries.get(name)
        out[name] = b.path if b is not None and b.path else None
    return out


class RuntimeReloader:
    """The reloader of ``runtimes`` / ``default-runtime`` (see the module docstring)."""

    def __init__(
        self,
        *,
        builtin_paths: Mapping[str, str | None],
        wrappers_dir: str,
        probe: HostProbe | None = None,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self._builtin_paths = dict(builtin_paths)
        self._wrappers_dir = wrappers_dir
        self._probe = probe if probe is not None else real_host_probe()
        self._which = which

    def prepare(self, plan: ReloadPlan) -> list[Wrapper]:
        """Validate the new runtimes (raises ``ConfigError``); return the wrappers they need."""
        cfg = plan.new
        check_runtime_config(cfg)
        check_runtime_paths(cfg, self._probe)
        resolved = check_runtimes(cfg, self._builtin_paths, self._which)
        return [r.wrapper for r in resolved if r.wrapper is not None]

    async def __call__(self, plan: ReloadPlan, txn: ReloadTransaction) -> None:
        if not RUNTIME_KEYS.intersection(plan.changed):
            return
        wrappers = self.prepare(plan)
        created = await asyncio.to_thread(ensure_wrappers, self._wrappers_dir, wrappers)
        changes = runtime_changes(plan.live, plan.new)

        def committed() -> None:
            log.info(
                "Runtimes reloaded (%s); containers started from now on use them, running "
                "ones keep their runtime%s",
                changes.describe() or "no change",
                f"; new wrapper(s): {', '.join(created)}" if created else "",
            )

        def rolled_back() -> None:
            if created:
                # Deliberately kept (see the module docstring).
                log.info("reload rolled back; keeping runtime wrapper(s) %s", ", ".join(created))

        txn.on_commit(committed)
        txn.on_rollback(rolled_back)
