"""The ``local`` volume driver's store: ``<data-root>/volumes/<name>/_data`` holds the
data, ``<name>/volume.json`` the record (written last: its presence makes the volume exist).
A volume with driver options (``type``/``device``/``o``) is mounted onto ``_data`` with
mount(2) as dockerd's local driver does, when a container first needs it, and unmounted
when it is removed. Removal renames the directory to ``.trash-*`` first, so a crash never
leaves half a volume; the start-up sweep clears leftovers."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import replace

from whaled.errors import Conflict, InvalidParameter, NotFound
from whaled.image.mounts import is_mounted, mount, unmount
from whaled.osutil.atomic import atomic_write_json
from whaled.osutil.tree import remove_tree, sweep, walk_fd
from whaled.volume.model import LOCAL_DRIVER, Volume

log = logging.getLogger(__name__)

RECORD = "volume.json"
DATA = "_data"

# mount(2) flags the local driver's ``o`` option may name (the rest is fs data).
_FLAGS = {
    "ro": 1,  # MS_RDONLY
    "nosuid": 2,
    "nodev": 4,
    "noexec": 8,
    "sync": 16,
    "remount": 32,
    "dirsync": 128,
    "noatime": 1024,
    "nodiratime": 2048,
    "bind": 4096,
    "rbind": 4096 | 16384,
}


class NoSuchVolume(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"get {name}: no such volume")


def mount_args(options: Mapping[str, str]) -> tuple[str, str, int, str]:
    """(source, fstype, flags, data) for a volume's driver options (pure)."""
    flags = 0
    data: list[str] = []
    for opt in (options.get("o") or "").split(","):
        if not opt:
            continue
        if opt in _FLAGS:
            flags |= _FLAGS[opt]
        elif opt != "rw":
            data.append(opt)
    fstype = options.get("type") or ""
    if fstype == "none":
        fstype = ""
    return options.get("device") or "", fstype, flags, ",".join(data)


class VolumeStore:
    def __init__(self, data_root: str) -> None:
        self.root = os.path.join(data_root, "volumes")
        os.makedirs(self.root, 0o701, exist_ok=True)
        self._lock = threading.Lock()
        self._volumes: dict[str, Volume] = {}
        for name in sweep(self.root, lambda n: n.startswith((".tmp-", ".trash-"))):
            log.info("removed leftover volume directory %s", name)
        for name in sorted(os.listdir(self.root)):
            try:
                with open(os.path.join(self.root, name, RECORD), encoding="utf-8") as f:
                    self._volumes[name] = Volume.from_json(json.load(f))
            except FileNotFoundError:
                log.warning("volume directory %s has no record: left alone", name)
            except (OSError, ValueError, KeyError) as e:
                log.warning("volume %s: unreadable record (%s): left alone", name, e)

    def data_dir(self, name: str) -> str:
        return os.path.join(self.root, name, DATA)

    def get(self, name: str) -> Volume:
        with self._lock:
            v = self._volumes.get(name)
        if v is None:
            raise NoSuchVolume(name)
        return v

    def all(self) -> list[Volume]:
        with self._lock:
            return sorted(self._volumes.values(), key=lambda v: v.name)

    def create(
        self,
        name: str,
        *,
        labels: Mapping[str, str],
        options: Mapping[str, str],
        created_at: str,
        owner: str = "",
    ) -> tuple[Volume, bool]:
        """The volume ``name``, made if missing (for container ``owner``: see
        ``Volume.owner``); True when it was made now."""
        with self._lock:
            existing = self._volumes.get(name)
            if existing is not None:
                return existing, False
            volume = Volume(
                name=name,
                driver=LOCAL_DRIVER,
                labels=dict(labels),
                options=dict(options),
                created_at=created_at,
                owner=owner,
            )
            tmp = os.path.join(self.root, ".tmp-" + secrets.token_hex(8))
            os.mkdir(tmp, 0o701)
            try:
                os.mkdir(os.path.join(tmp, DATA), 0o755)
                atomic_write_json(os.path.join(tmp, RECORD), volume.to_json(), mode=0o600)
                os.rename(tmp, os.path.join(self.root, name))
            except BaseException:
                remove_tree(tmp, ignore_errors=True)
                raise
            self._volumes[name] = volume
            return volume, True

    def disown(self, name: str) -> None:
        """Clear the volume's owner (atomically, on disk first): it is kept from now on."""
        with self._lock:
            volume = self._volumes.get(name)
            if volume is None or not volume.owner:
                return
            kept = replace(volume, owner="")
            atomic_write_json(os.path.join(self.root, name, RECORD), kept.to_json(), mode=0o600)
            self._volumes[name] = kept

    def ensure_mounted(self, volume: Volume) -> None:
        """Mount a volume with driver options onto its ``_data`` (once)."""
        if not volume.options:
            return
        target = self.data_dir(volume.name)
        if is_mounted(target):
            return
        source, fstype, flags, data = mount_args(volume.options)
        if not fstype and not flags & _FLAGS["bind"]:
            raise InvalidParameter(
                f"error while mounting volume '{target}': missing type or bind option"
            )
        mount(source, target, fstype, data, flags)

    def remove(self, name: str) -> Volume:
        with self._lock:
            volume = self._volumes.get(name)
            if volume is None:
                raise NoSuchVolume(name)
            path = os.path.join(self.root, name)
            target = os.path.join(path, DATA)
            if is_mounted(target):
                unmount(target, detach=False)
            if is_mounted(target):
                # never delete through a mount: a bind-type volume's data is the host's own
                raise Conflict(f"remove {name}: the volume is still mounted at {target}")
            trash = os.path.join(self.root, ".trash-" + secrets.token_hex(8))
            try:
                os.rename(path, trash)
            except OSError as e:
                raise Conflict(f"remove {name}: {e.strerror}") from None
            del self._volumes[name]
        remove_tree(trash, ignore_errors=True)
        return volume

    def size(self, name: str) -> int:
        """Bytes of regular-file content in the volume (``system df -v``)."""
        total = 0
        try:
            for w in walk_fd(self.data_dir(name)):
                if w.st.st_nlink >= 1 and (w.st.st_mode & 0o170000) == 0o100000:
                    total += w.st.st_size
        except OSError:
            return -1
        return total
