"""``GET /containers/json`` selection rules (``whaled.container.listing.select``), checked
against dockerd's ``daemon/list.go``: newest first, running only unless ``all`` (``limit``,
``before``, ``since`` and ``status`` imply it), regex ``id``/``name``, labels, exit codes,
ancestors, volumes, health, and a 400 for what dockerd refuses."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from whaled.container.listing import select
from whaled.container.model import Container, ContainerState, Health
from whaled.container.state import Status
from whaled.errors import InvalidParameter, NoSuchContainer

IMAGE_A = "sha256:" + "a" * 64
IMAGE_B = "sha256:" + "b" * 64  # child of IMAGE_A


def _container(
    cid: str,
    name: str,
    created: str,
    status: Status = Status.RUNNING,
    *,
    exit_code: int = 0,
    started: bool = True,
    labels: Mapping[str, str] | None = None,
    image_id: str = IMAGE_A,
    host_config: Mapping[str, Any] | None = None,
    health: str | None = None,
) -> Container:
    state = ContainerState(
        status=status,
        exit_code=exit_code,
        started_at="2024-01-01T00:00:00.000000000Z" if started else "0001-01-01T00:00:00Z",
        health=Health(status=health) if health is not None else None,
    )
    return Container(
        id=cid * 64 if len(cid) == 1 else cid,
        name=name,
        created=created,
        image_id=image_id,
        image_ref="busybox",
        path="sh",
        args=[],
        config={"Labels": dict(labels or {})},
        host_config=dict(host_config or {"NetworkMode": "none"}),
        state=state,
    )


def _fleet() -> list[Container]:
    """Five containers, created in the order c1 … c5 (listed out of order on purpose)."""
    return [
        _container("3", "c3", "2024-01-01T00:00:03.000000000Z", Status.EXITED, exit_code=3),
        _container("1", "c1", "2024-01-01T00:00:01.000000000Z", Status.CREATED, started=False),
        _container(
            "5",
            "c5",
            "2024-01-01T00:00:05.000000000Z",
            labels={"tier": "web", "env": "prod"},
            health="healthy",
            host_config={"NetworkMode": "none", "Binds": ["/srv/data:/data:ro"]},
        ),
        _container(
            "2",
            "c2",
            "2024-01-01T00:00:02.000000000Z",
            Status.EXITED,
            exit_code=0,
            labels={"tier": "db"},
            image_id=IMAGE_B,
        ),
        _container("4", "c4", "2024-01-01T00:00:04.000000000Z", Status.PAUSED, health="starting"),
    ]


def _lookup(fleet: Sequence[Container]) -> Callable[[str], Container]:
    def lookup(ref: str) -> Container:
        for c in fleet:
            if ref in (c.name, c.id) or c.id.startswith(ref):
                return c
        raise NoSuchContainer(ref)

    return lookup


def _image_matches(ref: str) -> Callable[[str], bool]:
    # IMAGE_B descends from IMAGE_A: "a" matches both, "b" only IMAGE_B.
    if ref == "a":
        return lambda image_id: image_id in (IMAGE_A, IMAGE_B)
    if ref == "b":
        return lambda image_id: image_id == IMAGE_B
    return lambda _: False


def names(
    filters: Mapping[str, Sequence[str]] | None = None, *, all: bool = False, limit: int = -1
) -> list[str]:
    fleet = _fleet()
    chosen = select(
        fleet,
        filters or {},
        all=all,
        limit=limit,
        lookup=_lookup(fleet),
        image_matches=_image_matches,
    )
    return [c.name for c in chosen]


def test_without_all_only_running_and_paused_newest_first() -> None:
    assert names() == ["c5", "c4"]


def test_all_lists_everything_newest_first() -> None:
    assert names(all=True) == ["c5", "c4", "c3", "c2", "c1"]


def test_limit_implies_all_and_cuts_after_filtering() -> None:
    assert names(limit=2) == ["c5", "c4"]
    assert names({"status": ["exited"]}, limit=1) == ["c3"]


@pytest.mark.parametrize("all_", [False, True])
@pytest.mark.parametrize("limit", [-1, 0, 1, 3, 9])
def test_a_listing_without_filters_answers_as_the_filtered_path_does(
    all_: bool, limit: int
) -> None:
    """No filters take a shortcut; a filter key without values takes the full path and
    filters nothing: both give the same containers in the same order (ties in ``created``
    too, and a restarting container counts as live)."""
    fleet = [
        *_fleet(),
        _container("6", "c6", "2024-01-01T00:00:04.000000000Z", Status.RESTARTING),
        _container("7", "c7", "2024-01-01T00:00:04.000000000Z", Status.EXITED),
    ]

    def chosen(filters: Mapping[str, Sequence[str]]) -> list[str]:
        found = select(
            fleet,
            filters,
            all=all_,
            limit=limit,
            lookup=_lookup(fleet),
            image_matches=_image_matches,
        )
        return [c.name for c in found]

    assert chosen({}) == chosen({"label": []})
    if not all_ and limit <= 0:
        assert chosen({}) == ["c5", "c4", "c6"]


def test_before_and_since_imply_all_and_are_exclusive() -> None:
    assert names({"before": ["c3"]}) == ["c2", "c1"]
    assert names({"since": ["c3"]}) == ["c5", "c4"]
    assert names({"since": ["c1"], "before": ["c4"]}) == ["c3", "c2"]


def test_before_an_unknown_container_is_not_found() -> None:
    with pytest.raises(NoSuchContainer):
        names({"before": ["nope"]})


def test_id_filter_is_a_prefix_or_regex_search() -> None:
    assert names({"id": ["3" * 12]}, all=True) == ["c3"]
    assert names({"id": ["^[12]"]}, all=True) == ["c2", "c1"]


def test_name_filter_searches_the_name_with_its_slash() -> None:
    assert names({"name": ["c2"]}, all=True) == ["c2"]
    assert names({"name": ["^/c[34]$"]}, all=True) == ["c4", "c3"]
    assert names({"name": ["^c2"]}, all=True) == []


@pytest.mark.timeout(20)
def test_name_and_id_filters_are_go_regexps_that_cannot_hang() -> None:
    # Python's backtracking re took 15 s for (a+)+b against a 28-character name, on the
    # event loop: the whole daemon stopped answering. Go's regexp (RE2) is linear.
    fleet = [_container("a" * 64, "a" * 200, "2024-01-01T00:00:01.000000000Z")]

    def chosen(filters: Mapping[str, Sequence[str]]) -> list[str]:
        found = select(
            fleet, filters, all=True, limit=-1, lookup=_lookup(fleet), image_matches=_image_matches
        )
        return [c.name for c in found]

    assert chosen({"name": ["(a+)+b"]}) == []
    assert chosen({"id": ["(a|aa)+$z"]}) == []
    assert chosen({"name": ["^/(a+)+$"]}) == ["a" * 200]
    with pytest.raises(InvalidParameter, match=r"invalid filter value '\(a': missing \)"):
        chosen({"name": ["(a"]})
    with pytest.raises(InvalidParameter, match="invalid filter value"):
        chosen({"name": ["a(?=b)"]})  # Go's regexp has no lookahead either


def test_label_key_and_key_value_all_must_match() -> None:
    assert names({"label": ["tier"]}, all=True) == ["c5", "c2"]
    assert names({"label": ["tier=db"]}, all=True) == ["c2"]
    assert names({"label": ["tier=web", "env=prod"]}, all=True) == ["c5"]
    assert names({"label": ["tier=web", "env=dev"]}, all=True) == []


def test_status_filter_implies_all_and_ors_its_values() -> None:
    assert names({"status": ["exited"]}) == ["c3", "c2"]
    assert names({"status": ["created", "paused"]}) == ["c4", "c1"]


def test_exited_filter_matches_exit_codes_of_exited_containers_only() -> None:
    assert names({"exited": ["0"]}, all=True) == ["c2"]
    assert names({"exited": ["3", "0"]}, all=True) == ["c3", "c2"]
    # c1 (created, never ran) has exit code 0 too but did not exit.
    assert "c1" not in names({"exited": ["0"]}, all=True)


def test_ancestor_matches_the_image_and_its_descendants() -> None:
    assert names({"ancestor": ["a"]}, all=True) == ["c5", "c4", "c3", "c2", "c1"]
    assert names({"ancestor": ["b"]}, all=True) == ["c2"]
    assert names({"ancestor": ["nothing"]}, all=True) == []


def test_volume_filter_matches_source_or_destination() -> None:
    assert names({"volume": ["/data"]}, all=True) == ["c5"]
    assert names({"volume": ["/srv/data"]}, all=True) == ["c5"]
    assert names({"volume": ["/elsewhere"]}, all=True) == []


def test_health_filter_with_none_for_containers_without_healthcheck() -> None:
    assert names({"health": ["healthy"]}, all=True) == ["c5"]
    assert names({"health": ["starting"]}, all=True) == ["c4"]
    assert names({"health": ["none"]}, all=True) == ["c3", "c2", "c1"]


def test_filters_combine_with_and() -> None:
    assert names({"label": ["tier"], "status": ["running"]}) == ["c5"]
    assert names({"ancestor": ["a"], "exited": ["3"]}, all=True) == ["c3"]


@pytest.mark.parametrize(
    ("filters", "fragment"),
    [
        ({"bogus": ["x"]}, "invalid filter 'bogus'"),
        ({"status": ["sleeping"]}, "status=sleeping"),
        ({"exited": ["zero"]}, "exited=zero"),
        ({"health": ["sick"]}, "sick"),
        ({"name": ["("]}, "("),
    ],
)
def test_bad_filters_are_invalid_parameters(
    filters: Mapping[str, Sequence[str]], fragment: str
) -> None:
    with pytest.raises(InvalidParameter) as info:
        names(filters, all=True)
    assert fragment in str(info.value)


def test_bad_status_message_is_dockerds() -> None:
    # dockerd (daemon/errors.go invalidFilter{"status", value}): "Invalid filter 'status=x'".
    with pytest.raises(InvalidParameter) as info:
        names({"status": ["sleeping"]})
    assert str(info.value).lower() == "invalid filter 'status=sleeping'"


def test_is_task_true_lists_nothing_false_everything() -> None:
    assert names({"is-task": ["true"]}, all=True) == []
    assert names({"is-task": ["false"]}, all=True) == ["c5", "c4", "c3", "c2", "c1"]
