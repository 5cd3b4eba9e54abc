"""Reload planning and the two-phase transaction helper (pure).

``plan_reload(live, candidate)`` says what a reload changes: the reloadable keys whose value
differs are copied onto a new snapshot; other keys that differ are reported as needing a
restart (dockerd stays silent about them — whaled says so). ``ReloadTransaction`` collects
on-commit / on-rollback actions registered by each reloader; exactly one of the two lists
runs, once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from whaled.config.model import Config
from whaled.config.options import OPTIONS, RELOADABLE_KEYS, encode_value

log = logging.getLogger("whaled.config")

Action = Callable[[], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadPlan:
    live: Config
    candidate: Config
    new: Config  # live + every reloadable change from candidate
    changed: tuple[str, ...]  # reloadable keys whose value changes now
    restart_required: tuple[str, ...]  # keys that changed but only apply at restart


def plan_reload(live: Config, candidate: Config) -> ReloadPlan:
    changed: list[str] = []
    restart: list[str] = []
    updates: dict[str, Any] = {}
    for option in OPTIONS:
        old = getattr(live, option.field)
        new = getattr(candidate, option.field)
        if old == new:
            continue
        if option.key in RELOADABLE_KEYS:
            changed.append(option.key)
            updates[option.field] = new
        else:
            restart.append(option.key)
    return ReloadPlan(
        live=live,
        candidate=candidate,
        new=dataclasses.replace(live, **updates),
        changed=tuple(changed),
        restart_required=tuple(restart),
    )


class ReloadTransaction:
    """Two-phase apply: reloaders prepare (may raise) and register commit/rollback actions."""

    def __init__(self) -> None:
        self._on_commit: list[Action] = []
        self._on_rollback: list[Action] = []
        self._done = False

    def on_commit(self, action: Action) -> None:
        self._on_commit.append(action)

    def on_rollback(self, action: Action) -> None:
        self._on_rollback.append(action)

    def commit(self) -> None:
        self._finish(self._on_commit)

    def rollback(self) -> None:
        # Undo in reverse order of preparation.
        self._finish(list(reversed(self._on_rollback)))

    def _finish(self, actions: list[Action]) -> None:
        if self._done:
            raise RuntimeError("reload transaction already finished")
        self._done = True
        for action in actions:
            try:
                action()
            except Exception:  # one failing side effect must not skip the others
                log.exception("reload action failed")


def _attr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def reload_event_attributes(plan: ReloadPlan, name: str) -> dict[str, str]:
    """dockerd's ``reload`` event attributes (every reloadable value), plus what changed."""
    cfg = plan.new
    attrs: dict[str, str] = {}
    for option in OPTIONS:
        if option.key not in RELOADABLE_KEYS:
            continue
        value = encode_value(getattr(cfg, option.field))
        if option.key == "runtimes":
            # dockerd's shape: space-separated "name:runtime" entries.
            attrs[option.key] = " ".join(
                f"{name}:{rt.path}" for name, rt in sorted(cfg.runtimes.items())
            )
        else:
            attrs[option.key] = _attr(value)
    attrs["name"] = name
    attrs["changed"] = ",".join(plan.changed)
    attrs["restart-required"] = ",".join(plan.restart_required)
    return attrs


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
#: ``user:password@host:port`` without a scheme (proxies are often written so).
_BARE_CREDENTIALS = re.compile(r"^[^/@\s:]+:[^/@\s]*@")


def mask_credentials(text: str) -> str:
    """``http://user:pw@proxy:3128`` → ``http://xxxxx:xxxxx@proxy:3128`` (dockerd's mask);
    a proxy written without a scheme (``user:pw@proxy:3128``) is masked too."""
    if "://" not in text:
        return _BARE_CREDENTIALS.sub("xxxxx:xxxxx@", text)
    return _URL_CREDENTIALS.sub(r"\g<scheme>xxxxx:xxxxx@", text)


def config_json_for_log(cfg: Config) -> str:
    """The whole config as daemon.json JSON, with proxy credentials masked."""
    body = {o.key: encode_value(getattr(cfg, o.field)) for o in OPTIONS}
    proxies = body["proxies"]
    for k in list(proxies):
        proxies[k] = mask_credentials(proxies[k])
    return json.dumps(body, separators=(",", ":"), sort_keys=True)
