"""The runtime reloader: validate like start-up, write wrappers ahead, never delete one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from whaled.config.model import Config, FrozenMap, RuntimeConfig
from whaled.config.reload import ReloadPlan, ReloadTransaction, plan_reload
from whaled.config.store import ConfigStore
from whaled.config.validate import HostProbe
from whaled.daemon.reload import ReloadService
from whaled.daemon.runtimes import RuntimeReloader, builtin_runtime_paths
from whaled.errors import ConfigError
from whaled.events import EventBus
from whaled.host.binaries import BinaryVersion
from whaled.runtime.registry import wrapper_for
from whaled.runtime.wrappers import ensure_wrapper, ensure_wrappers

RUNC = "/usr/sbin/runc"
OTHER = "/opt/rt/other"
EXECUTABLES = {RUNC, OTHER}
BUILTIN = {"runc": RUNC, "crun": None}


def which(name: str) -> str | None:
    return {"runc": RUNC}.get(name)


PROBE = HostProbe(
    is_executable=lambda p: p in EXECUTABLES,
    which=which,
    is_file=lambda p: p in EXECUTABLES,
    nofile_hard_limit=lambda: 20000,
)


def runtimes(**rts: RuntimeConfig) -> FrozenMap[str, RuntimeConfig]:
    return FrozenMap(rts)


def reloader(tmp_path: Path) -> RuntimeReloader:
    return RuntimeReloader(
        builtin_paths=BUILTIN, wrappers_dir=str(tmp_path / "runtimes"), probe=PROBE, which=which
    )


def prepare(r: RuntimeReloader, live: Config, new: Config) -> ReloadTransaction:
    txn = ReloadTransaction()
    asyncio.run(r(plan_reload(live, new), txn))
    return txn


def files(tmp_path: Path) -> set[str]:
    d = tmp_path / "runtimes"
    return set(os.listdir(d)) if d.exists() else set()


def test_builtin_paths_come_from_the_probed_binaries() -> None:
    binaries = {
        "runc": BinaryVersion(name="runc", path=RUNC),
        "crun": BinaryVersion(name="crun", path=None, error="not found"),
        "conmon": BinaryVersion(name="conmon", path="/usr/bin/conmon"),
    }
    assert builtin_runtime_paths(binaries) == {"runc": RUNC, "crun": None}


def test_unrelated_changes_do_nothing(tmp_path: Path) -> None:
    live = Config(runtimes=runtimes(gone=RuntimeConfig(path="/nowhere", runtime_args=("-x",))))
    txn = prepare(reloader(tmp_path), live, Config(labels=("a=b",), runtimes=live.runtimes))
    txn.commit()
    assert files(tmp_path) == set()


def test_a_new_runtime_with_args_gets_its_wrapper_before_the_commit(tmp_path: Path) -> None:
    new = Config(runtimes=runtimes(custom=RuntimeConfig(path="runc", runtime_args=("--debug",))))
    prepare(reloader(tmp_path), Config(), new)  # not committed yet
    w = wrapper_for(RUNC, ("--debug",))
    assert files(tmp_path) == {w.name}
    assert (tmp_path / "runtimes" / w.name).read_bytes() == w.content
    assert os.access(tmp_path / "runtimes" / w.name, os.X_OK)


def test_a_runtime_without_args_needs_no_wrapper(tmp_path: Path) -> None:
    new = Config(runtimes=runtimes(plain=RuntimeConfig(path=OTHER)), default_runtime="plain")
    prepare(reloader(tmp_path), Config(), new).commit()
    assert files(tmp_path) == set()


def test_rollback_keeps_the_wrappers_it_wrote(tmp_path: Path) -> None:
    new = Config(runtimes=runtimes(custom=RuntimeConfig(path=RUNC, runtime_args=("--debug",))))
    txn = prepare(reloader(tmp_path), Config(), new)
    txn.rollback()
    assert files(tmp_path) == {wrapper_for(RUNC, ("--debug",)).name}


def test_removing_or_changing_a_runtime_deletes_nothing(tmp_path: Path) -> None:
    old_w = ensure_wrapper(str(tmp_path / "runtimes"), wrapper_for(RUNC, ("--old",)))
    live = Config(runtimes=runtimes(custom=RuntimeConfig(path=RUNC, runtime_args=("--old",))))
    changed = Config(runtimes=runtimes(custom=RuntimeConfig(path=RUNC, runtime_args=("--new",))))
    prepare(reloader(tmp_path), live, changed).commit()
    prepare(reloader(tmp_path), changed, Config()).commit()
    assert os.path.exists(old_w)
    assert files(tmp_path) == {os.path.basename(old_w), wrapper_for(RUNC, ("--new",)).name}


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (
            Config(runtimes=runtimes(runc=RuntimeConfig(path=RUNC, runtime_args=("-a",)))),
            "runtime name 'runc' is reserved",
        ),
        (
            Config(runtimes=runtimes(c=RuntimeConfig(path=RUNC, runtime_args=("-a",))),
                   default_runtime="ghost"),
            "specified default runtime 'ghost' does not exist",
        ),
        (Config(default_runtime="crun"), "default runtime crun is not installed on this host"),
        (
            Config(runtimes=runtimes(c=RuntimeConfig(path="/opt/nope", runtime_args=("-a",)))),
            'runtime c: path "/opt/nope" is not an executable file',
        ),
        (
            Config(runtimes=runtimes(c=RuntimeConfig(path="nope", runtime_args=("-a",)))),
            'runtime c: path "nope" is not an executable file',
        ),
        (Config(runtimes=runtimes(c=RuntimeConfig())), "either a runtimeType or a path"),
    ],
)  # fmt: skip
def test_refused_like_at_start_up_and_nothing_written(
    tmp_path: Path, new: Config, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(reloader(tmp_path), Config(), new)
    assert files(tmp_path) == set()


def test_in_the_reload_service_a_later_refusal_keeps_the_wrapper_and_the_snapshot(
    tmp_path: Path,
) -> None:
    live = Config()
    new = Config(runtimes=runtimes(custom=RuntimeConfig(path=RUNC, runtime_args=("--debug",))))
    store = ConfigStore(live)
    svc = ReloadService(
        store=store, events=EventBus(), load_candidate=lambda: new, engine_id="E", name="h"
    )
    svc.add_reloader(reloader(tmp_path))

    def refuse(plan: ReloadPlan, txn: ReloadTransaction) -> None:
        raise ConfigError("later reloader refuses")

    svc.add_reloader(refuse)
    outcome = asyncio.run(svc.reload())
    assert not outcome.ok and store.current() is live
    assert files(tmp_path) == {wrapper_for(RUNC, ("--debug",)).name}


def test_ensure_wrappers_reports_only_what_it_created(tmp_path: Path) -> None:
    d = str(tmp_path / "runtimes")
    a, b = wrapper_for(RUNC, ("-a",)), wrapper_for(RUNC, ("-b",))
    ensure_wrapper(d, a)
    inode = os.stat(os.path.join(d, a.name)).st_ino
    assert ensure_wrappers(d, [a, b, b]) == [b.name]
    assert os.stat(os.path.join(d, a.name)).st_ino == inode  # never rewritten
