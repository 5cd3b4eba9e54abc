from __future__ import annotations

import pytest

from whaled.errors import Conflict
from whaled.image.reference import normalize
from whaled.image.store import (
    DeleteImage,
    DeleteState,
    ImageUser,
    Untag,
    is_single_reference,
    plan_delete,
)

IMG = "sha256:" + "1" * 64
PARENT = "sha256:" + "2" * 64
DIG = "sha256:" + "d" * 64


def state(**refs: list[str]) -> DeleteState:
    s = DeleteState(parents={IMG: None})
    s.refs[IMG] = [normalize(x) for x in refs.get("img", [])]
    if not s.refs[IMG]:
        del s.refs[IMG]
    return s


def test_untag_when_other_tags_remain() -> None:
    s = state(img=["busybox:latest", "other:1"])
    actions = plan_delete(s, "busybox", IMG, force=False, prune=True)
    assert actions == [Untag(ref=normalize("busybox"))]


def test_untag_last_tag_deletes_image() -> None:
    s = state(img=["busybox:latest"])
    actions = plan_delete(s, "busybox:latest", IMG, force=False, prune=True)
    assert actions == [Untag(ref=normalize("busybox")), DeleteImage(image_id=IMG)]


def test_untag_also_removes_digests_of_same_repo() -> None:
    s = state(img=["busybox:latest", f"busybox@{DIG}", "other:1"])
    actions = plan_delete(s, "busybox", IMG, force=False, prune=True)
    assert actions == [Untag(ref=normalize("busybox")), Untag(ref=normalize(f"busybox@{DIG}"))]


def test_delete_by_id_with_several_repos_needs_force() -> None:
    s = state(img=["busybox:latest", "other:1"])
    with pytest.raises(Conflict) as e:
        plan_delete(s, "1111", IMG, force=False, prune=True)
    assert str(e.value) == (
        "conflict: unable to delete 111111111111 (must be forced) - image is referenced in "
        "multiple repositories"
    )
    s = state(img=["busybox:latest", "other:1"])
    actions = plan_delete(s, "1111", IMG, force=True, prune=True)
    assert actions[-1] == DeleteImage(image_id=IMG)
    assert {a.ref.familiar for a in actions if isinstance(a, Untag)} == {
        "busybox:latest",
        "other:1",
    }


def test_delete_by_id_single_repo_untags_then_deletes() -> None:
    s = state(img=["busybox:latest", f"busybox@{DIG}"])
    assert is_single_reference(s.references(IMG))
    actions = plan_delete(s, IMG, IMG, force=False, prune=True)
    assert actions[-1] == DeleteImage(image_id=IMG)
    assert len(actions) == 3


def test_running_container_cannot_be_forced() -> None:
    s = state(img=["busybox:latest"])
    s.users[IMG] = [ImageUser(container_id="c" * 64, running=True)]
    with pytest.raises(Conflict) as e:
        plan_delete(s, IMG, IMG, force=True, prune=True)
    assert str(e.value) == (
        "conflict: unable to delete 111111111111 (cannot be forced) - image is being used by "
        "running container cccccccccccc"
    )


def test_stopped_container_must_be_forced() -> None:
    s = state()
    s.users[IMG] = [ImageUser(container_id="c" * 64, running=False)]
    with pytest.raises(Conflict) as e:
        plan_delete(s, IMG, IMG, force=False, prune=True)
    assert "(must be forced) - image is being used by stopped container cccccccccccc" in str(
        e.value
    )
    s = state()
    s.users[IMG] = [ImageUser(container_id="c" * 64, running=False)]
    assert plan_delete(s, IMG, IMG, force=True, prune=True) == [DeleteImage(image_id=IMG)]


def test_untag_in_use_single_reference_needs_force() -> None:
    s = state(img=["busybox:latest"])
    s.users[IMG] = [ImageUser(container_id="c" * 64, running=False)]
    with pytest.raises(Conflict) as e:
        plan_delete(s, "busybox", IMG, force=False, prune=True)
    assert str(e.value) == (
        'conflict: unable to remove repository reference "busybox" (must force) - container '
        "cccccccccccc is using its referenced image 111111111111"
    )


def test_untag_of_image_with_stopped_user_quietly_keeps_image_when_forced() -> None:
    s = state(img=["busybox:latest"])
    s.users[IMG] = [ImageUser(container_id="c" * 64, running=True)]
    # force untags; the running container keeps the (now dangling) image: no error.
    actions = plan_delete(s, "busybox", IMG, force=True, prune=True)
    assert actions == [Untag(ref=normalize("busybox"))]


def test_child_images_block_delete_and_prune_walks_parents() -> None:
    s = DeleteState(parents={IMG: PARENT, PARENT: None})
    with pytest.raises(Conflict, match="image has dependent child images"):
        plan_delete(s, PARENT, PARENT, force=True, prune=True)
    s = DeleteState(parents={IMG: PARENT, PARENT: None})
    assert plan_delete(s, IMG, IMG, force=False, prune=True) == [
        DeleteImage(image_id=IMG),
        DeleteImage(image_id=PARENT),
    ]
    s = DeleteState(parents={IMG: PARENT, PARENT: None})
    assert plan_delete(s, IMG, IMG, force=False, prune=False) == [DeleteImage(image_id=IMG)]
    # a tagged parent is not pruned
    s = DeleteState(parents={IMG: PARENT, PARENT: None}, refs={PARENT: [normalize("base")]})
    assert plan_delete(s, IMG, IMG, force=False, prune=True) == [DeleteImage(image_id=IMG)]
