from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.command import (
    merge_command,
    merge_config_env,
    process_args,
    process_env,
)
from whaled.runtime.defaults import DEFAULT_PATH_ENV

IMG_EP = ["/entry.sh"]
IMG_CMD = ["serve", "--port", "80"]


def test_nothing_given_uses_image_entrypoint_and_cmd() -> None:
    assert merge_command(IMG_EP, IMG_CMD, None, None, False) == (("/entry.sh",), tuple(IMG_CMD))


def test_cmd_given_replaces_image_cmd_keeps_entrypoint() -> None:
    assert merge_command(IMG_EP, IMG_CMD, None, ["sh"], False) == (("/entry.sh",), ("sh",))


def test_empty_cmd_falls_back_to_image_cmd() -> None:
    assert merge_command(IMG_EP, IMG_CMD, None, [], False) == (("/entry.sh",), tuple(IMG_CMD))


def test_entrypoint_given_resets_image_cmd() -> None:
    assert merge_command(IMG_EP, IMG_CMD, ["/bin/sh"], None, True) == (("/bin/sh",), ())


def test_entrypoint_and_cmd_given() -> None:
    assert merge_command(IMG_EP, IMG_CMD, ["/bin/sh"], ["-c", "x"], True) == (
        ("/bin/sh",),
        ("-c", "x"),
    )


def test_entrypoint_empty_string_clears_entrypoint_and_image_cmd() -> None:
    # docker run --entrypoint "" img  → Entrypoint [""]
    assert merge_command(IMG_EP, IMG_CMD, [""], None, True) == ((), ())
    assert merge_command(IMG_EP, IMG_CMD, [""], ["ls"], True) == ((), ("ls",))


def test_entrypoint_empty_list_drops_image_entrypoint_keeps_cmd() -> None:
    assert merge_command(IMG_EP, IMG_CMD, [], None, True) == ((), tuple(IMG_CMD))


def test_entrypoint_not_given_is_ignored() -> None:
    assert merge_command(IMG_EP, None, ["ignored"], ["x"], False) == (("/entry.sh",), ("x",))


def test_image_without_anything() -> None:
    assert merge_command(None, None, None, None, False) == ((), ())


def test_process_args() -> None:
    assert process_args(("/e",), ("a", "b")) == ("/e", "a", "b")
    assert process_args((), ("ls",)) == ("ls",)


def test_process_args_no_command() -> None:
    with pytest.raises(InvalidParameter, match="No command specified"):
        process_args((), ())


def test_config_env_request_wins_then_image_rest() -> None:
    image = ["PATH=/img/bin", "A=1", "B=2"]
    request = ["B=x", "C=3"]
    assert merge_config_env(image, request) == ("B=x", "C=3", "PATH=/img/bin", "A=1")


def test_config_env_without_request_is_image_env() -> None:
    assert merge_config_env(["A=1"], None) == ("A=1",)
    assert merge_config_env(None, ["A=1"]) == ("A=1",)


def test_process_env_defaults_path_and_hostname() -> None:
    assert process_env(("A=1",), hostname="box", tty=False) == (
        f"PATH={DEFAULT_PATH_ENV}",
        "HOSTNAME=box",
        "A=1",
    )


def test_process_env_image_path_replaces_default_in_place() -> None:
    env = process_env(("A=1", "PATH=/opt/bin"), hostname="box", tty=False)
    assert env == ("PATH=/opt/bin", "HOSTNAME=box", "A=1")


def test_process_env_tty_sets_term_and_config_wins() -> None:
    assert "TERM=xterm" in process_env((), hostname="h", tty=True)
    assert "TERM=xterm" not in process_env((), hostname="h", tty=False)
    env = process_env(("TERM=dumb", "HOSTNAME=other"), hostname="h", tty=True)
    assert env == (f"PATH={DEFAULT_PATH_ENV}", "HOSTNAME=other", "TERM=dumb")


def test_process_env_bare_name_unsets() -> None:
    env = process_env(("A=1", "HOSTNAME"), hostname="h", tty=False)
    assert env == (f"PATH={DEFAULT_PATH_ENV}", "A=1")


def test_process_env_value_with_equals() -> None:
    assert process_env(("A=b=c",), hostname="h", tty=False)[-1] == "A=b=c"
