"""``GET /containers/json`` selection: all/limit/before/since and the filters (pure).

dockerd's rules: newest first; without ``all`` only running (and paused/restarting)
containers, but ``limit``, ``before`` and ``since`` imply ``all``; ``id`` and ``name`` are
regular expressions searched in the ID / in the name with its leading ``/``; ``label`` takes
``key`` or ``key=value``; ``status`` one of the states; ``exited`` an exit code (only exited
containers match); ``ancestor`` an image (reference or ID) the container's image is or
descends from; ``volume`` a mount source or destination; ``health`` starting, healthy,
unhealthy or none; ``network`` the network mode; ``before``/``since`` a container.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence

from whaled.container.model import Container
from whaled.container.state import Status, is_running
from whaled.errors import InvalidParameter
from whaled.image.filters import match_kv_list
from whaled.image.store import ImageUser
from whaled.regexp import BadPattern, Regexp, compile_linear

Filters = Mapping[str, Sequence[str]]

ACCEPTED = frozenset(
    {
        "id",
        "name",
        "label",
        "status",
        "exited",
        "ancestor",
        "before",
        "since",
        "volume",
        "health",
        "network",
        "isolation",
        "is-task",
        "publish",
        "expose",
    }
)
STATUSES = tuple(s.value for s in Status)
HEALTH = ("starting", "healthy", "unhealthy", "none")


def _regex(value: str) -> Regexp:
    """A ``name``/``id`` filter: Go's regexp, matched in linear time (whaled.regexp)."""
    try:
        return compile_linear(value)
    except BadPattern as e:
        raise InvalidParameter(f"invalid filter value '{value}': {e.message}") from None


def _mount_points(c: Container) -> list[str]:
    points = []
    for bind in c.host_config.get("Binds") or []:
        parts = str(bind).split(":")
        points.extend(parts[:2])
    for m in c.host_config.get("Mounts") or []:
        points.extend(str(m.get(k, "")) for k in ("Source", "Target"))
    points.extend((c.host_config.get("Tmpfs") or {}).keys())
    return points


#: the states a listing without ``all`` shows
_LIVE = (Status.RUNNING, Status.PAUSED, Status.RESTARTING)


def _created(c: Container) -> str:
    return c.created


def select(
    containers: Sequence[Container],
    filters: Filters,
    *,
    all: bool,
    limit: int,
    lookup: Callable[[str], Container],
    image_matches: Callable[[str], Callable[[str], bool]],
) -> list[Container]:
    """``lookup``: a container by name/ID for before/since (NotFound propagates);
    ``image_matches(ancestor)``: a predicate on image IDs for one ``ancestor`` value."""
    if not filters:  # ``docker ps`` and pollers: the same answer, without the filters' set-up
        chosen = (
            containers if all or limit > 0 else [c for c in containers if c.state.status in _LIVE]
        )
        ordered = sorted(chosen, key=_created, reverse=True)
        return ordered[:limit] if limit > 0 else ordered
    for key in filters:
        if key not in ACCEPTED:
            raise InvalidParameter(f"invalid filter '{key}'")
    for value in filters.get("status", ()):
        if value not in STATUSES:
            raise InvalidParameter(f"Invalid filter 'status={value}'")
    for value in filters.get("health", ()):
        if value not in HEALTH:
            raise InvalidParameter(f"Unrecognised filter value for health: {value}")
    exited: set[int] = set()
    for value in filters.get("exited", ()):
        try:
            exited.add(int(value))
        except ValueError:
            raise InvalidParameter(f"invalid filter 'exited={value}'") from None
    ordered = sorted(containers, key=_created, reverse=True)
    before = [lookup(v) for v in filters.get("before", ())]
    since = [lookup(v) for v in filters.get("since", ())]
    if before or since or limit > 0:
        all = True
    if filters.get("status") or exited:
        all = True
    id_res = [_regex(v) for v in filters.get("id", ())]
    name_res = [_regex(v) for v in filters.get("name", ())]
    ancestors = [image_matches(v) for v in filters.get("ancestor", ())]
    # looked up once, not per container (a listing of hundreds is polled)
    labels = list(filters.get("label", ()))
    statuses = filters.get("status", ())
    volumes = filters.get("volume", ())
    healths = filters.get("health", ())
    networks = filters.get("network", ())
    no_tasks = "true" in filters.get("is-task", ())
    out: list[Container] = []
    for c in ordered:
        status = c.state.status
        if not all and status not in _LIVE:
            continue
        if before and not builtins.all(c.created < b.created for b in before):
            continue
        if since and not builtins.all(c.created > s.created for s in since):
            continue
        if id_res and not any(r.search(c.id) for r in id_res):
            continue
        if name_res and not any(r.search("/" + c.name) for r in name_res):
            continue
        if labels and not match_kv_list(labels, c.config.get("Labels") or {}):
            continue
        if statuses and status.value not in statuses:
            continue
        if exited and (status != Status.EXITED or c.state.exit_code not in exited):
            continue
        if ancestors and not any(m(c.image_id) for m in ancestors):
            continue
        if volumes and not any(v in _mount_points(c) for v in volumes):
            continue
        if healths:
            health = c.state.health.status if c.state.health is not None else "none"
            if health not in healths:
                continue
        if networks and str(c.host_config.get("NetworkMode", "default")) not in networks:
            continue
        if no_tasks:
            continue
        out.append(c)
        if limit > 0 and len(out) >= limit:
            break
    return out


def count_by_state(containers: Iterable[Container]) -> tuple[int, int, int, int]:
    """(total, running, paused, stopped) for /info; restarting counts as stopped."""
    total = running = paused = 0
    for c in containers:
        total += 1
        if c.state.status == Status.PAUSED:
            paused += 1
        elif c.state.status == Status.RUNNING:
            running += 1
    return total, running, paused, total - running - paused


def image_users(containers: Iterable[Container], image_id: str) -> list[ImageUser]:
    """The containers made from the image (what an image delete must respect)."""
    return [
        ImageUser(container_id=c.id, running=is_running(c.state.status))
        for c in containers
        if c.image_id == image_id
    ]
