"""What a container runs and with which environment: dockerd's merge rules, as pure functions.

Two moments, as in dockerd:

- at **create**, the request's Entrypoint/Cmd/Env are merged with the image's
  (:func:`merge_command`, :func:`merge_config_env`) and the result is stored as the
  container's Config;
- at **start**, the stored Config becomes the process of the OCI spec
  (:func:`process_args`, :func:`process_env`).
"""

from __future__ import annotations

from collections.abc import Sequence

from whaled.errors import InvalidParameter
from whaled.runtime.defaults import DEFAULT_PATH_ENV


def merge_command(
    image_entrypoint: Sequence[str] | None,
    image_cmd: Sequence[str] | None,
    entrypoint: Sequence[str] | None,
    cmd: Sequence[str] | None,
    entrypoint_given: bool,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The container's (Entrypoint, Cmd) from the image's and the create request's.

    ``entrypoint_given`` says whether the request carried an Entrypoint at all (a JSON null
    or a missing key is "not given"; ``entrypoint`` is then ignored).

    dockerd's rules:
    - an Entrypoint given with at least one element replaces the image's Entrypoint **and
      resets the image's Cmd** (only the request's Cmd is used). ``[""]`` — what
      ``docker run --entrypoint ""`` sends — means "no entrypoint" and resets Cmd too;
    - an Entrypoint given as ``[]`` drops the image's Entrypoint but keeps its Cmd;
    - no Entrypoint: the image's Entrypoint is kept; the request's Cmd, when non-empty,
      replaces the image's Cmd.
    """
    req_ep = tuple(entrypoint or ()) if entrypoint_given else None
    req_cmd = tuple(cmd or ())
    if req_ep:
        if req_ep == ("",):
            req_ep = ()
        return req_ep, req_cmd
    final_cmd = req_cmd if req_cmd else tuple(image_cmd or ())
    final_ep = () if req_ep is not None else tuple(image_entrypoint or ())
    return final_ep, final_cmd


def process_args(entrypoint: Sequence[str], cmd: Sequence[str]) -> tuple[str, ...]:
    """argv of the container's process: Entrypoint followed by Cmd. Empty → dockerd's 400."""
    args = (*entrypoint, *cmd)
    if not args:
        raise InvalidParameter("No command specified")
    return args


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_config_env(image_env: Sequence[str] | None, env: Sequence[str] | None) -> tuple[str, ...]:
    """The container's Config.Env at create: the request's entries, then the image's entries
    whose names the request does not set (the request wins per name)."""
    request = tuple(env or ())
    image = tuple(image_env or ())
    if not request:
        return image
    names = {_env_key(e) for e in request}
    return request + tuple(e for e in image if _env_key(e) not in names)


def _replace_or_append(base: list[str], overrides: Sequence[str]) -> list[str]:
    """dockerd's ReplaceOrAppendEnvValues: ``K=V`` replaces K in place or is appended; a bare
    ``K`` (no ``=``) removes K."""
    result = list(base)
    index = {_env_key(e): i for i, e in enumerate(result)}
    removed: set[str] = set()
    for entry in overrides:
        key = _env_key(entry)
        if "=" not in entry:
            removed.add(key)
            continue
        removed.discard(key)
        if key in index:
            result[index[key]] = entry
        else:
            index[key] = len(result)
            result.append(entry)
    return [e for e in result if _env_key(e) not in removed]


def process_env(config_env: Sequence[str], *, hostname: str, tty: bool) -> tuple[str, ...]:
    """Environment of the container's process: ``PATH`` (the default when the Config has
    none), ``HOSTNAME``, ``TERM=xterm`` with a TTY, then the Config's entries, which replace
    those defaults by name."""
    base = [f"PATH={DEFAULT_PATH_ENV}", f"HOSTNAME={hostname}"]
    if tty:
        base.append("TERM=xterm")
    return tuple(_replace_or_append(base, config_env))
