"""Wrapper files on disk: written once, removed only when unreferenced (real files)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from whaled.runtime.registry import wrapper_for
from whaled.runtime.wrappers import ensure_wrapper, remove_unreferenced


def test_wrapper_is_written_once_and_runs(tmp_path: Any) -> None:
    d = str(tmp_path / "runtimes")
    w = wrapper_for("/bin/echo", ("--from-wrapper",))
    path = ensure_wrapper(d, w)
    assert os.path.basename(path) == w.name and os.access(path, os.X_OK)
    first = os.stat(path)
    assert ensure_wrapper(d, w) == path
    assert os.stat(path).st_ino == first.st_ino  # never rewritten
    out = subprocess.run([path, "x"], capture_output=True, text=True, check=True).stdout
    assert out == "--from-wrapper x\n"


def test_only_unreferenced_wrappers_are_removed(tmp_path: Any) -> None:
    d = str(tmp_path / "runtimes")
    kept = ensure_wrapper(d, wrapper_for("/bin/true", ("-a",)))
    gone = ensure_wrapper(d, wrapper_for("/bin/true", ("-b",)))
    assert remove_unreferenced(d, [kept, "/usr/sbin/runc"]) == [os.path.basename(gone)]
    assert os.path.exists(kept) and not os.path.exists(gone)
    assert remove_unreferenced(str(tmp_path / "missing"), []) == []
