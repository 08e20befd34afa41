"""A process's own mailbox, which knows how many bytes it holds and ends the process past a bound.

The node bounds the bytes it holds for a process that does not read them (`max_mailbox_bytes`).
A process that does read them but does not handle them holds them itself: a server whose `async`
handler awaits while its reader task keeps filing messages, or an agent, which moves each
request into its turn queue as it arrives. The same bound applies there: each message counts the
size its frame had on the wire (the process never measures a decoded value), and when what the
process holds passes `max_mailbox_bytes` it ends with reason `("mailbox_full", limit)`, as the
node kills it for a backlog the node holds.

Only the operations the runtime uses keep the count: `append(value, size)`, `popleft()`,
`del box[i]`, `clear()` and `drop(unwanted)`; `hold`/`release` count what the process keeps
beside the mailbox (an agent's queued turns). The process's loop thread files and takes
messages; another thread's `legion.receive` in a process (a tool's) takes one without a lock,
which can only make the count approximate, never lose or reorder a message.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, SupportsIndex

__all__ = ["Mailbox"]

_append = deque.append
_popleft = deque.popleft


class Mailbox(deque[Any]):
    """The messages a process has read and not yet handled, with their frames' sizes."""

    def __init__(self) -> None:
        super().__init__()
        self._sizes: deque[int] = deque()
        self.bytes = 0  # the frames of the messages in the mailbox
        self.held = 0  # held by the process beside it (`hold`)
        self.last_size = 0  # the frame size of the message `popleft` returned last
        self.limit: float = math.inf
        self._full: Callable[[], object] | None = None

    def bound(self, limit: int, full: Callable[[], object]) -> None:
        """Call `full()` (which ends the process) once `bytes + held` passes `limit`."""
        self.limit = limit
        self._full = full

    # `append` and `popleft` run once per message: `deque.x(self, ...)` rather than `super()`,
    # and one comparison for the bound, keep them a few hundred nanoseconds.
    def append(self, value: Any, size: int = 0) -> None:
        self._sizes.append(size)  # the size first: whoever sees the message finds its size
        _append(self, value)
        self.bytes = total = self.bytes + size
        if total + self.held > self.limit:
            self._overflow()

    def popleft(self) -> Any:
        value = _popleft(self)
        self.last_size = size = self._sizes.popleft() if self._sizes else 0
        self.bytes -= size
        return value

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        assert not isinstance(index, slice)  # a deque has no slices; this keeps mypy honest
        super().__delitem__(index)
        if int(index) < len(self._sizes):
            self.bytes -= self._sizes[index]
            del self._sizes[index]

    def clear(self) -> None:
        super().clear()
        self._sizes.clear()
        self.bytes = 0

    def drop(self, unwanted: Callable[[Any], bool]) -> None:
        """Remove every message for which `unwanted(message)` is true."""
        sizes = list(self._sizes)
        sizes += [0] * (len(self) - len(sizes))  # never lose a message to a count out of step
        kept = [(m, s) for m, s in zip(self, sizes, strict=False) if not unwanted(m)]
        super().clear()
        self._sizes.clear()
        super().extend(m for m, _ in kept)
        self._sizes.extend(s for _, s in kept)
        self.bytes = sum(self._sizes)

    def hold(self, size: int) -> None:
        """Count `size` bytes the process keeps beside the mailbox (a queued turn)."""
        self.held += size
        if self.bytes + self.held > self.limit:
            self._overflow()

    def release(self, size: int) -> None:
        """Stop counting `size` bytes `hold` counted (the turn started)."""
        self.held -= size

    def _overflow(self) -> None:
        if self._full is not None:
            self._full()
