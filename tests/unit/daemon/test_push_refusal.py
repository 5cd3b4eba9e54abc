"""dockerd's checks before a push, on the daemon's local tags."""

from __future__ import annotations

from whaled.daemon.images import push_refusal
from whaled.image.reference import parse_normalized_named

TAGS = ["busybox:latest", "busybox:1.36", "localhost:5000/team/app:v1"]


def refusal(name: str) -> str | None:
    return push_refusal(parse_normalized_named(name), TAGS)


def test_a_local_tag_can_be_pushed() -> None:
    assert refusal("busybox:1.36") is None
    assert refusal("docker.io/library/busybox:latest") is None
    assert refusal("localhost:5000/team/app:v1") is None


def test_a_name_without_tag_pushes_every_tag_of_the_repository() -> None:
    assert refusal("busybox") is None


def test_a_missing_tag_of_a_known_repository() -> None:
    assert refusal("busybox:nope") == "tag does not exist: busybox:nope"
    assert refusal("localhost:5000/team/app:v2") == "tag does not exist: localhost:5000/team/app:v2"


def test_a_repository_without_local_tags() -> None:
    assert refusal("someone/nothing:1") == (
        "An image does not exist locally with the tag: someone/nothing"
    )
    assert refusal("localhost:5000/team/other") == (
        "An image does not exist locally with the tag: localhost:5000/team/other"
    )
    assert push_refusal(parse_normalized_named("busybox"), []) == (
        "An image does not exist locally with the tag: busybox"
    )
