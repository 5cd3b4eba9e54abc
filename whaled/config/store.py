"""ConfigStore: the live configuration as one immutable snapshot (read-copy-update).

Readers call ``current()`` once per operation and pass the snapshot down; they never read
the store again mid-operation, so a long request never sees two configs. A reload builds a
whole new Config (``dataclasses.replace`` on the frozen snapshot), validates it, and only
then ``swap``s it in with a single reference assignment — atomic for every reader, with no
lock on the read path. Writers (reloads) are serialised by the caller.
"""

from __future__ import annotations

from whaled.config.model import Config


class ConfigStore:
    __slots__ = ("_current", "_generation")

    def __init__(self, initial: Config) -> None:
        self._current = initial
        self._generation = 0

    def current(self) -> Config:
        return self._current

    @property
    def generation(self) -> int:
        """Incremented by every swap; lets tests and logs tell snapshots apart."""
        return self._generation

    def swap(self, new: Config) -> Config:
        """Publish ``new`` as the live snapshot; return the previous one."""
        old = self._current
        self._current = new
        self._generation += 1
        return old
