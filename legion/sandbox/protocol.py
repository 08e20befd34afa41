"""The wire format, in one place: control messages (parent <-> zygote), evaluation messages
(parent <-> child) and the length-prefixed framing used on the pipes.

Every frame is a 4-byte big-endian length followed by one msgpack-encoded tagged ``Struct``.
The parent decodes child frames with a typed decoder and a size cap; it never unpickles them.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections.abc import Iterator
from typing import Any

import msgspec

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024
"""Largest frame the parent accepts from a child (16 MiB); a bigger one kills the child."""
MAX_TOOL_CALLS = 1000
"""Tool calls allowed per evaluation; the next one is a protocol violation."""
MAX_DEPTH = 200
"""Deepest nesting of lists/dicts a value may have to cross between the sandbox and its parent
(tool arguments, tool results, an evaluation's value). Deeper values are refused where they are
encoded, with this number in the message, so no decoder ever recurses past its stack."""

FD_IN_CHILD = 3
"""The child reads requests and tool replies here."""
FD_OUT_CHILD = 4
"""The child writes tool calls and its result here."""

# Exit codes a child uses when it cannot send a Result frame.
EXIT_OK = 0
EXIT_HARDENING = 70
EXIT_MEMORY = 71
EXIT_PROTOCOL = 72


class Limits(msgspec.Struct, frozen=True, array_like=True):
    """Resource limits and layer choices for one child, chosen by the parent."""

    max_memory: int
    max_cpu: int
    max_output: int
    unsafe: bool = False
    session: bool = False
    guard: bool = True  # AST guard, restricted builtins and audit hook (the UX layer)
    break_seccomp: bool = False  # test hook: install an invalid filter to exercise fail-closed


# --- parent <-> zygote -----------------------------------------------------------------------


class Spawn(msgspec.Struct, tag=True, frozen=True, array_like=True):
    """Sent on the control socket with 3 fds: child's stdin pipe, child's result pipe, status
    socket."""

    limits: Limits


class Ready(msgspec.Struct, tag=True, frozen=True, array_like=True):
    pid: int
    python: str
    seccomp: bool
    seccomp_error: str
    landlock_abi: int
    vmsize: int
    modules: list[str]


class Spawned(msgspec.Struct, tag=True, frozen=True, array_like=True):
    """Sent on the per-evaluation status socket, with the child's pidfd."""

    pid: int


class Exited(msgspec.Struct, tag=True, frozen=True, array_like=True):
    pid: int
    exit_code: int | None
    signal: int | None
    cpu_seconds: float
    maxrss_kib: int


ZygoteMessage = Ready | Spawned | Exited

# --- parent -> child -------------------------------------------------------------------------


class Request(msgspec.Struct, tag=True, frozen=True, array_like=True):
    code: str
    tools: dict[str, list[str]]
    bindings: bytes | None = None
    snapshot: bool = True
    modules: tuple[str, ...] = ()  # the allowlist for this evaluation (empty: the default one)


class Reply(msgspec.Struct, tag=True, frozen=True, array_like=True):
    id: int
    ok: bool
    value: Any = None
    error: str = ""


ParentMessage = Request | Reply

# --- child -> parent -------------------------------------------------------------------------


class Call(msgspec.Struct, tag=True, frozen=True, array_like=True):
    id: int
    tool: str
    fn: str
    args: list[Any]
    kwargs: dict[str, Any]


class Result(msgspec.Struct, tag=True, frozen=True, array_like=True):
    ok: bool
    value: Any
    value_native: bool
    value_repr: str
    stdout: str
    error: str
    error_kind: str
    traceback: str
    variables: dict[str, str]
    bindings: bytes | None
    dropped: dict[str, str]  # name -> why it could not be kept
    layers: list[str]


class Refused(msgspec.Struct, tag=True, frozen=True, array_like=True):
    """The child could not harden itself and will not run code (fail closed)."""

    reason: str
    layers: list[str]


ChildMessage = Call | Result | Refused

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode


def frame(msg: Any) -> bytes:
    """Encode one message as a length-prefixed frame."""
    body = _encoder.encode(msg)
    return FRAME_HEADER.pack(len(body)) + body


LIMIT_BOUNDS_NESTING = sys.version_info < (3, 12)
"""On 3.11 the recursion limit also bounds C code such as msgspec's encoder and decoder (3.12
gave C recursion a counter of its own), which makes :func:`depth_bound` free."""


@contextlib.contextmanager
def depth_bound(depth: int = MAX_DEPTH) -> Iterator[None]:
    """Within the block, encoding or decoding a value nested deeper than about ``depth`` levels
    raises ``RecursionError`` (on 3.11; a no-op where :data:`LIMIT_BOUNDS_NESTING` is false).
    Child side only: it lowers the interpreter's recursion limit, which is process-wide, and
    the child has no other thread.

    msgspec counts nesting against that limit, so setting it to the current stack depth plus
    ``depth`` bounds the value at no cost per element, and whatever decodes the bytes on the
    other side needs at most ``depth`` levels of its own stack."""
    if not LIMIT_BOUNDS_NESTING:
        yield
        return
    frame_: Any = sys._getframe()
    here = 0
    while frame_ is not None:
        here += 1
        frame_ = frame_.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(here + depth)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


_SCALARS = frozenset({type(None), bool, int, float, str, bytes})


def encode_bounded(msg: Any, depth: int = MAX_DEPTH) -> bytes:
    """Encode ``msg``; ``RecursionError`` past about ``depth`` levels (child side, see
    :func:`depth_bound`; where that is a no-op, the value is walked instead)."""
    if type(msg) in _SCALARS:  # nothing nested: no bound to set (the usual last value)
        return _encoder.encode(msg)
    if not LIMIT_BOUNDS_NESTING and nesting_exceeds(msg, depth):
        raise RecursionError(f"value nested deeper than {depth} levels")
    with depth_bound(depth):
        return _encoder.encode(msg)


def nesting_exceeds(value: Any, depth: int) -> bool:
    """True if ``value`` nests lists, tuples, sets, dicts or Structs deeper than ``depth``
    (iterative: safe on values of any depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, msgspec.Struct):
            children: Any = msgspec.structs.astuple(item)
        elif isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            children = item
        else:
            continue
        if level > depth:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


zygote_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(ZygoteMessage)
parent_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(ParentMessage)
child_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(ChildMessage)
spawn_decoder: msgspec.msgpack.Decoder[Spawn] = msgspec.msgpack.Decoder(Spawn)


def write_all(fd: int, data: bytes) -> None:
    """Blocking write of a whole buffer (child side)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_exact(fd: int, n: int) -> bytes | None:
    """Blocking read of exactly ``n`` bytes; None on EOF (child side)."""
    parts = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> bytes | None:
    """Blocking read of one frame body (child side); None on EOF."""
    header = read_exact(fd, FRAME_HEADER.size)
    if header is None:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    return read_exact(fd, size)
