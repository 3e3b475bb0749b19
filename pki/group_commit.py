"""Group commit: concurrent callers' writes committed together, by one of them.

Each caller queues its item, then waits for the commit lock. The caller that
takes it writes every item queued so far with one call of ``write`` (one
transaction) and hands each caller its own result, or that transaction's error
to every caller in it. So a caller returns only after the commit that holds its
item (recorded before returned), items are written in the order they were
queued (the audit chain follows that order), and a failed commit fails all of
its callers, none of whose items is then recorded.

No thread of its own and no waiting for company: a caller alone writes its item
alone, the way it was always written; items only gather while a commit is
under way. Framework-free: ``write`` is handed in (``pki.store``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class _Slot(Generic[T]):
    __slots__ = ("item", "done", "error")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.error: BaseException | None = None


class GroupCommit(Generic[T]):
    """Serializes ``write`` and batches the items that queue up meanwhile.

    ``write`` takes the items in queue order and returns only once all of them
    are committed; if it raises, none of them may be (one transaction).
    """

    def __init__(self, write: Callable[[Sequence[T]], None]) -> None:
        self._write = write
        self._queue: list[_Slot[T]] = []
        self._queue_lock = threading.Lock()
        # Held by the caller that is writing a batch. An item still queued when a
        # caller takes it is written by that caller; only it empties the queue.
        self._commit_lock = threading.Lock()

    def pending(self) -> int:
        """Items queued and not yet taken into a batch."""
        with self._queue_lock:
            return len(self._queue)

    def submit(self, item: T) -> None:
        """Write ``item`` (with whatever else is queued) and return once it is
        committed; raise the batch's error if its transaction failed."""
        slot: _Slot[T] = _Slot(item)
        with self._queue_lock:
            self._queue.append(slot)
        with self._commit_lock:
            if not slot.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                error: BaseException | None = None
                try:
                    self._write([s.item for s in batch])
                except BaseException as exc:
                    error = exc
                for s in batch:
                    s.error, s.done = error, True
        if slot.error is not None:
            raise slot.error
