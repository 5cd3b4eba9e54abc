"""Event bus and /events filter matching (pure, no sockets)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from whaled.api.filters import Filters, parse_filters
from whaled.events import (
    EVENT_FILTER_KEYS,
    HISTORY_SIZE,
    Event,
    EventBus,
    Subscription,
    event_matches,
    familiar_image_name,
)

T0 = 1_700_000_000_000_000_000


class FakeClock:
    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def tick(self, ns: int = 1_000) -> int:
        self.now += ns
        return self.now


def container_event(action: str = "start", **attrs: str) -> Event:
    attributes = {"name": "web", "image": "busybox:latest", **attrs}
    return Event(
        type="container",
        action=action,
        actor_id="abc123def456",
        attributes=attributes,
        time_nano=T0 + 123_456_789,
    )


# --- Event -------------------------------------------------------------------------------


def test_container_event_wire_shape() -> None:
    ev = container_event(exitCode="0")
    assert ev.to_json() == {
        "status": "start",
        "id": "abc123def456",
        "from": "busybox:latest",
        "Type": "container",
        "Action": "start",
        "Actor": {
            "ID": "abc123def456",
            "Attributes": {"exitCode": "0", "image": "busybox:latest", "name": "web"},
        },
        "scope": "local",
        "time": 1_700_000_000,
        "timeNano": T0 + 123_456_789,
    }


def test_wire_key_order_follows_dockerd() -> None:
    out = container_event().to_json()
    assert list(out) == [
        "status",
        "id",
        "from",
        "Type",
        "Action",
        "Actor",
        "scope",
        "time",
        "timeNano",
    ]
    actor = out["Actor"]
    assert isinstance(actor, dict)
    assert list(actor["Attributes"]) == ["image", "name"]  # sorted like Go maps


def test_image_event_has_legacy_fields_without_from() -> None:
    ev = Event(
        type="image",
        action="pull",
        actor_id="busybox:latest",
        attributes={"name": "busybox"},
        time_nano=T0,
    )
    out = ev.to_json()
    assert out["status"] == "pull"
    assert out["id"] == "busybox:latest"
    assert "from" not in out


def test_container_event_without_image_omits_from() -> None:
    ev = Event(type="container", action="destroy", actor_id="x", time_nano=T0)
    out = ev.to_json()
    assert "from" not in out
    assert out["Actor"] == {"ID": "x", "Attributes": {}}


def test_other_types_have_no_legacy_fields() -> None:
    ev = Event(
        type="network", action="create", actor_id="n1", attributes={"name": "br"}, time_nano=T0
    )
    out = ev.to_json()
    assert not {"status", "id", "from"} & set(out)
    assert out["Type"] == "network"


def test_legacy_fields_can_be_turned_off() -> None:
    out = container_event().to_json(legacy_fields=False)
    assert not {"status", "id", "from"} & set(out)


def test_time_is_floor_seconds() -> None:
    ev = Event(type="daemon", action="reload", actor_id="d", time_nano=1_999_999_999)
    assert ev.to_json()["time"] == 1
    assert ev.time_seconds == 1


def test_event_is_immutable() -> None:
    source = {"name": "web"}
    ev = Event(type="container", action="start", actor_id="x", attributes=source, time_nano=T0)
    source["name"] = "changed"
    assert ev.attributes["name"] == "web"
    with pytest.raises(TypeError):
        ev.attributes["name"] = "other"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.action = "stop"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Event("container", "start", "x", {}, "local", T0)  # type: ignore[call-arg]


def test_event_equality_and_hash() -> None:
    a = container_event()
    b = container_event()
    assert a == b
    assert hash(a) == hash(b)
    assert a != container_event(extra="1")


# --- EventBus: history ---------------------------------------------------------------------


def test_emit_stamps_clock_and_records_history() -> None:
    clock = FakeClock()
    bus = EventBus(clock=clock)
    ev = bus.emit("daemon", "reload", "daemon-id", {"name": "host"})
    assert ev.time_nano == T0
    assert ev.scope == "local"
    assert bus.history() == [ev]
    assert bus.now_nano() == T0


def test_history_ring_buffer_keeps_last_256() -> None:
    clock = FakeClock()
    bus = EventBus(clock=clock)
    assert HISTORY_SIZE == 256
    for i in range(300):
        clock.tick()
        bus.emit("container", "start", f"c{i}")
    past = bus.history()
    assert len(past) == 256
    assert past[0].actor_id == "c44"
    assert past[-1].actor_id == "c299"


def test_history_since_until_inclusive() -> None:
    clock = FakeClock(start=0)
    bus = EventBus(clock=clock)
    for t in (10, 20, 30, 40):
        clock.now = t
        bus.emit("container", "start", f"c{t}")
    ids = [e.actor_id for e in bus.history(20, 30)]
    assert ids == ["c20", "c30"]
    assert [e.actor_id for e in bus.history(since_nano=25)] == ["c30", "c40"]
    assert [e.actor_id for e in bus.history(until_nano=15)] == ["c10"]
    assert bus.history(41) == []
    only_c40 = bus.history(predicate=lambda e: e.actor_id == "c40")
    assert [e.actor_id for e in only_c40] == ["c40"]


# --- EventBus: subscriptions ---------------------------------------------------------------


def test_subscriber_receives_published_events_in_order() -> None:
    async def main() -> None:
        bus = EventBus(clock=FakeClock())
        sub = bus.subscribe()
        assert bus.subscriber_count == 1
        first = bus.emit("container", "create", "c1")
        second = bus.emit("container", "start", "c1")
        assert await sub.get() == first
        assert await sub.get() == second
        sub.close()
        assert bus.subscriber_count == 0

    asyncio.run(main())


def test_full_subscriber_drops_while_other_keeps_receiving() -> None:
    async def main() -> None:
        bus = EventBus(clock=FakeClock())
        slow = bus.subscribe(max_queue=2)
        fast = bus.subscribe(max_queue=100)
        for i in range(5):
            bus.emit("container", "start", f"c{i}")
        assert slow.dropped == 3
        assert slow.pending() == 2
        assert fast.dropped == 0
        assert [(await fast.get()) for _ in range(5)] == bus.history()
        # The slow one got the two oldest; the rest were dropped for it only.
        got = [await slow.get(), await slow.get()]
        assert [e.actor_id for e in got if e] == ["c0", "c1"]
        # Room again: it receives new events.
        ev = bus.emit("container", "stop", "c9")
        assert await slow.get() == ev

    asyncio.run(main())


def test_publish_with_full_queue_returns_without_a_loop() -> None:
    # No event loop is running here: publish must not need one, must not block and must not
    # raise even though the only subscriber's queue is full.
    bus = EventBus(clock=FakeClock())
    sub = bus.subscribe(max_queue=1)
    for i in range(1000):
        bus.emit("container", "start", f"c{i}")
    assert sub.dropped == 999
    assert sub.pending() == 1


def test_publish_survives_failing_predicate() -> None:
    bus = EventBus(clock=FakeClock())

    def boom(event: Event) -> bool:
        raise RuntimeError("bad predicate")

    broken = bus.subscribe(predicate=boom)
    ok = bus.subscribe()
    bus.emit("container", "start", "c1")
    assert broken.pending() == 0
    assert ok.pending() == 1


def test_predicate_keeps_unwanted_events_out_of_the_queue() -> None:
    bus = EventBus(clock=FakeClock())
    sub = bus.subscribe(max_queue=1, predicate=lambda e: e.type == "image")
    bus.emit("container", "start", "c1")
    bus.emit("image", "pull", "busybox")
    bus.emit("container", "stop", "c1")
    assert sub.dropped == 0
    ev = sub.get_nowait()
    assert ev is not None and ev.type == "image"
    assert sub.get_nowait() is None


def test_bus_close_wakes_waiting_readers_and_ends_iteration() -> None:
    async def main() -> None:
        bus = EventBus(clock=FakeClock())
        sub_a = bus.subscribe()
        sub_b = bus.subscribe()

        async def collect(sub: Subscription, into: list[Event]) -> None:
            async for event in sub:
                into.append(event)

        got_a: list[Event] = []
        got_b: list[Event] = []
        tasks = [
            asyncio.create_task(collect(sub_a, got_a)),
            asyncio.create_task(collect(sub_b, got_b)),
        ]
        await asyncio.sleep(0)  # both readers are now waiting on empty queues
        last = bus.emit("daemon", "shutdown", "d")
        bus.close()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        # Events queued before close are still delivered, then iteration stops.
        assert got_a == [last]
        assert got_b == [last]
        assert bus.subscriber_count == 0
        assert bus.closed

    asyncio.run(main())


def test_close_with_full_queue_drains_then_ends() -> None:
    async def main() -> None:
        bus = EventBus(clock=FakeClock())
        sub = bus.subscribe(max_queue=2)
        for i in range(3):
            bus.emit("container", "start", f"c{i}")
        bus.close()
        got = [ev.actor_id async for ev in sub]
        assert got == ["c0", "c1"]
        assert await sub.get() is None
        assert sub.pending() == 0

    asyncio.run(main())


def test_close_wakes_several_readers_of_one_subscription() -> None:
    async def main() -> None:
        bus = EventBus(clock=FakeClock())
        sub = bus.subscribe()
        readers = [asyncio.create_task(sub.get()) for _ in range(3)]
        await asyncio.sleep(0)
        sub.close()
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=5)
        assert results == [None, None, None]
        assert sub.closed

    asyncio.run(main())


def test_subscription_close_is_idempotent_and_stops_delivery() -> None:
    async def main() -> None:
        bus = EventBus(clock=FakeClock())
        with bus.subscribe() as sub:
            bus.emit("container", "start", "c1")
        sub.close()
        assert bus.subscriber_count == 0
        bus.emit("container", "stop", "c1")  # not delivered: closed
        got = [ev.action async for ev in sub]
        assert got == ["start"]

    asyncio.run(main())


def test_subscribe_after_close_is_closed() -> None:
    async def main() -> None:
        bus = EventBus(clock=FakeClock())
        bus.close()
        sub = bus.subscribe()
        assert sub.closed
        assert bus.subscriber_count == 0
        assert await sub.get() is None

    asyncio.run(main())


def test_max_queue_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventBus().subscribe(max_queue=0)


def test_snapshot_and_subscribe_is_atomic() -> None:
    """Events published around the snapshot are in exactly one of history or the stream."""

    async def main() -> None:
        clock = FakeClock()
        bus = EventBus(clock=clock)
        published: list[Event] = []

        async def producer() -> None:
            for i in range(200):
                clock.tick()
                published.append(bus.emit("container", "start", f"c{i}"))
                await asyncio.sleep(0)

        task = asyncio.create_task(producer())
        for _ in range(50):
            await asyncio.sleep(0)
        past, sub = bus.subscribe_with_history(since_nano=0)
        await task
        sub.close()
        live = [ev async for ev in sub]
        assert past  # the snapshot was taken mid-stream
        assert live
        assert past + live == published

    asyncio.run(main())


def test_subscribe_with_history_applies_bounds_and_predicate() -> None:
    clock = FakeClock(start=0)
    bus = EventBus(clock=clock)
    for t in (10, 20, 30):
        clock.now = t
        bus.emit("container", "start", f"c{t}")
        bus.emit("image", "pull", f"i{t}")
    past, sub = bus.subscribe_with_history(15, None, predicate=lambda e: e.type == "image")
    assert [e.actor_id for e in past] == ["i20", "i30"]
    bus.emit("container", "stop", "c99")
    bus.emit("image", "delete", "i99")
    assert sub.pending() == 1


# --- event_matches -----------------------------------------------------------------------


def f(**fields: list[str]) -> Filters:
    return Filters(fields)


def ev(
    type_: str = "container",
    action: str = "start",
    actor_id: str = "abc123def456",
    scope: str = "local",
    **attrs: str,
) -> Event:
    return Event(
        type=type_,
        action=action,
        actor_id=actor_id,
        attributes=attrs,
        scope=scope,
        time_nano=T0,
    )


def test_event_filter_keys() -> None:
    assert {
        "config",
        "container",
        "daemon",
        "event",
        "image",
        "label",
        "network",
        "node",
        "plugin",
        "scope",
        "secret",
        "service",
        "type",
        "volume",
    } == EVENT_FILTER_KEYS


def test_no_filters_match_everything() -> None:
    assert event_matches(ev(), Filters())
    assert event_matches(ev("network", "connect", "n1"), parse_filters("{}"))


def test_type_filter_ors_values() -> None:
    assert event_matches(ev("container"), f(type=["container"]))
    assert event_matches(ev("image"), f(type=["container", "image"]))
    assert not event_matches(ev("volume"), f(type=["container", "image"]))


def test_event_filter_exact_and_colon_prefix() -> None:
    assert event_matches(ev(action="start"), f(event=["start"]))
    assert not event_matches(ev(action="start"), f(event=["stop"]))
    assert not event_matches(ev(action="start"), f(event=["sta"]))  # no prefix matching
    health = ev(action="health_status: healthy")
    assert event_matches(health, f(event=["health_status"]))
    assert event_matches(health, f(event=["health_status: healthy"]))
    assert not event_matches(health, f(event=["health_status: unhealthy"]))
    exec_start = ev(action="exec_start: sh -c date")
    assert event_matches(exec_start, f(event=["exec_start"]))
    assert event_matches(exec_start, f(event=["die", "exec_start"]))


def test_container_filter_fuzzy_on_id_and_name() -> None:
    c = ev(name="web")
    assert event_matches(c, f(container=["abc123def456"]))
    assert event_matches(c, f(container=["abc123"]))  # ID prefix
    assert event_matches(c, f(container=["web"]))
    assert event_matches(c, f(container=["nope", "web"]))
    assert not event_matches(c, f(container=["def456"]))
    assert not event_matches(c, f(container=["db"]))
    # An event about another kind of object is not about this container.
    assert not event_matches(ev("network", "connect", "n1", container="abc"), f(container=["abc"]))


def test_image_filter() -> None:
    c = ev(image="busybox:latest")
    assert event_matches(c, f(image=["busybox:latest"]))
    assert event_matches(c, f(image=["busybox"]))  # tag stripped from the attribute
    assert not event_matches(c, f(image=["alpine"]))
    assert not event_matches(c, f(image=["busy"]))  # exact, not prefix
    hub = ev(image="docker.io/library/busybox:1.36")
    assert event_matches(hub, f(image=["busybox"]))
    registry = ev(image="localhost:5000/app:v1")
    assert event_matches(registry, f(image=["localhost:5000/app"]))
    digest = ev(image="busybox@sha256:" + "a" * 64)
    assert event_matches(digest, f(image=["busybox"]))

    pulled = ev("image", "pull", "busybox:latest", name="busybox")
    assert event_matches(pulled, f(image=["busybox:latest"]))  # actor ID
    assert event_matches(pulled, f(image=["busybox"]))
    image_id = "sha256:" + "b" * 64
    tagged = ev("image", "tag", image_id, name="app:v2")
    assert event_matches(tagged, f(image=[image_id]))
    assert event_matches(tagged, f(image=["app"]))
    assert not event_matches(tagged, f(image=["sha256"]))


def test_familiar_image_name() -> None:
    assert familiar_image_name("busybox") == "busybox"
    assert familiar_image_name("busybox:latest") == "busybox"
    assert familiar_image_name("docker.io/library/busybox:latest") == "busybox"
    assert familiar_image_name("docker.io/user/app:1") == "user/app"
    assert familiar_image_name("localhost:5000/app") == "localhost:5000/app"
    assert familiar_image_name("localhost:5000/app:1@sha256:" + "c" * 64) == "localhost:5000/app"
    assert familiar_image_name("sha256:" + "d" * 64) == "sha256:" + "d" * 64


def test_label_filter_over_attributes() -> None:
    c = ev(name="web", **{"com.example.tier": "front", "maintainer": "me"})
    assert event_matches(c, f(label=["com.example.tier"]))
    assert event_matches(c, f(label=["com.example.tier=front"]))
    assert not event_matches(c, f(label=["com.example.tier=back"]))
    assert not event_matches(c, f(label=["missing"]))
    # dockerd ANDs label values.
    assert event_matches(c, f(label=["maintainer", "com.example.tier=front"]))
    assert not event_matches(c, f(label=["maintainer", "missing"]))
    assert not event_matches(ev("network", "create", "n1"), f(label=["x"]))
    assert event_matches(ev(**{"a": "b=c"}), f(label=["a=b=c"]))


def test_daemon_filter() -> None:
    d = ev("daemon", "reload", "DAEMON-ID", name="host1")
    assert event_matches(d, f(daemon=["DAEMON-ID"]))
    assert event_matches(d, f(daemon=["host1"]))
    assert not event_matches(d, f(daemon=["host2"]))


@pytest.mark.parametrize("kind", ["network", "volume", "plugin"])
def test_object_filters_fuzzy_on_id_and_name(kind: str) -> None:
    obj = ev(kind, "create", "0123456789ab", name="thing")
    assert event_matches(obj, f(**{kind: ["0123"]}))
    assert event_matches(obj, f(**{kind: ["thing"]}))
    assert not event_matches(obj, f(**{kind: ["other"]}))
    # The filter keeps only events about that object.
    assert not event_matches(ev(), f(**{kind: ["thing"]}))


@pytest.mark.parametrize("kind", ["node", "service", "secret", "config"])
def test_swarm_filters_exclude_local_events(kind: str) -> None:
    assert not event_matches(ev(name="web"), f(**{kind: ["x"]}))


def test_scope_filter() -> None:
    assert event_matches(ev(), f(scope=["local"]))
    assert not event_matches(ev(), f(scope=["swarm"]))
    assert event_matches(ev(scope="swarm"), f(scope=["local", "swarm"]))


def test_keys_are_anded() -> None:
    c = ev(action="die", name="web", image="busybox:latest")
    assert event_matches(c, f(type=["container"], event=["die"], container=["web"]))
    assert not event_matches(c, f(type=["container"], event=["start"], container=["web"]))
    assert not event_matches(c, f(type=["image"], container=["web"]))
    assert event_matches(c, f(event=["start", "die"], image=["busybox"]))


def test_matches_parsed_cli_filters() -> None:
    raw = '{"type":{"container":true},"event":{"health_status":true}}'
    filters = parse_filters(raw)
    assert event_matches(ev(action="health_status: unhealthy"), filters)
    assert not event_matches(ev(action="start"), filters)


def _all_events() -> Iterator[Event]:
    yield ev()
    yield ev("image", "pull", "busybox")
    yield ev("daemon", "reload", "d")


def test_empty_valued_keys_filter_nothing() -> None:
    filters = parse_filters('{"container": {}, "label": [], "event": null}')
    assert all(event_matches(e, filters) for e in _all_events())
