"""On-disk container store: one directory per container, written atomically.

Layout: ``<data-root>/containers/<id>/container.json`` (the record). Names and ID prefixes
are indexed in memory; the store is the only writer of those files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

from whaled.container.model import Container
from whaled.errors import Conflict, InvalidParameter, NoSuchContainer
from whaled.osutil.atomic import atomic_write
from whaled.osutil.tree import remove_tree, sweep

log = logging.getLogger("whaled.container")

RECORD = "container.json"


def name_conflict(name: str, holder: str) -> Conflict:
    return Conflict(
        f'Conflict. The container name "/{name}" is already in use by container "{holder}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )


#: Directories of removed containers waiting for ``empty_trash``.
TRASH_PREFIX = ".trash-"


class ContainerStore:
    def __init__(self, data_root: str) -> None:
        self.root = os.path.join(data_root, "containers")
        os.makedirs(self.root, mode=0o710, exist_ok=True)
        self._by_id: dict[str, Container] = {}
        self._by_name: dict[str, str] = {}

    def dir_of(self, container_id: str) -> str:
        return os.path.join(self.root, container_id)

    def load_all(self) -> list[Container]:
        """Read every record; a directory without a readable record is left for cleanup."""
        loaded = []
        self.empty_trash()
        for entry in sorted(os.listdir(self.root)):
            if entry.startswith(TRASH_PREFIX):
                continue  # could not be removed (logged)
            directory = os.path.join(self.root, entry)
            path = os.path.join(directory, RECORD)
            try:
                with open(path, encoding="utf-8") as f:
                    container = Container.from_json(json.load(f))
            except FileNotFoundError:
                # No record: a crash between the directory and the record of a create, or
                # between the record and the directory of a removal. Nobody owns it.
                log.info("removing container directory %s: it has no record", entry)
                remove_tree(directory, ignore_errors=True)
                continue
            except (OSError, ValueError, TypeError, KeyError) as e:
                log.warning("skipping container directory %s: %s", entry, e)
                continue
            sweep(directory)  # temp files of interrupted writes
            self._by_id[container.id] = container
            self._by_name[container.name] = container.id
            loaded.append(container)
        return loaded

    def reserve(self, container: Container) -> None:
        """Register a new container (name must be free) and persist it."""
        holder = self._by_name.get(container.name)
        if holder is not None:
            raise name_conflict(container.name, holder)
        os.makedirs(self.dir_of(container.id), mode=0o710, exist_ok=True)
        self._by_id[container.id] = container
        self._by_name[container.name] = container.id
        try:
            self.save(container)
        except BaseException:
            self.forget(container.id)
            raise

    def save(self, container: Container) -> None:
        data = json.dumps(container.to_json(), separators=(",", ":")).encode()
        atomic_write(os.path.join(self.dir_of(container.id), RECORD), data, 0o600)

    def rename(self, container: Container, new_name: str) -> None:
        holder = self._by_name.get(new_name)
        if holder is not None and holder != container.id:
            raise name_conflict(new_name, holder)
        old = container.name
        container.name = new_name
        try:
            self.save(container)
        except BaseException:
            container.name = old
            raise
        del self._by_name[old]
        self._by_name[new_name] = container.id

    def forget(self, container_id: str) -> None:
        container = self._by_id.pop(container_id, None)
        if container is not None and self._by_name.get(container.name) == container_id:
            del self._by_name[container.name]

    def delete(self, container_id: str) -> None:
        """Forget the container and move its directory aside for ``empty_trash`` (record
        first, so a crash mid-way leaves no half-valid record; leftovers go at ``load_all``)."""
        self.forget(container_id)
        directory = self.dir_of(container_id)
        try:
            os.unlink(os.path.join(directory, RECORD))
        except FileNotFoundError:
            pass
        try:
            os.rename(directory, os.path.join(self.root, TRASH_PREFIX + container_id))
        except FileNotFoundError:
            pass
        except OSError:
            remove_tree(directory, ignore_errors=True)

    def empty_trash(self) -> None:
        """Delete the directories ``delete`` moved aside (one that cannot be removed is
        logged and left for the next start)."""
        sweep(self.root, lambda name: name.startswith(TRASH_PREFIX))

    def owner_ids(self) -> set[str]:
        """IDs of the containers that may own data elsewhere (RW layers...): every loaded
        one and every container directory, also one whose record could not be read."""
        ids = set(self._by_id)
        ids.update(n for n in os.listdir(self.root) if not n.startswith(TRASH_PREFIX))
        return ids

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without '/'), or unique ID prefix."""
        if not ref:
            raise NoSuchContainer(ref)
        found = self._by_id.get(ref)
        if found is not None:
            return found
        name = ref.removeprefix("/")
        cid = self._by_name.get(name)
        if cid is not None:
            return self._by_id[cid]
        matches = [c for i, c in self._by_id.items() if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NoSuchContainer(ref)

    def all(self) -> list[Container]:
        return list(self._by_id.values())

    def by_id(self, container_id: str) -> Container | None:
        return self._by_id.get(container_id)

    def exists(self, container_id: str) -> bool:
        return container_id in self._by_id

    def name_taken(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Container]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
