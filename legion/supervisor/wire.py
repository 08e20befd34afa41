"""The wire protocol between application, node, zygote and processes: one module, one codec.

Frames are a 4-byte little-endian length followed by a msgpack body. Control messages form one
closed, tagged union of msgspec Structs; user payloads travel as `msgspec.Raw` so the node routes
them without decoding, and only the receiver turns them into Python values. The runtime's value
types (`Pid`, `Ref`, `Crash`, `Exit`, `Down`, ...)
are msgpack extension types, so they keep their type inside any user message.

Direction is in the name: `*In` frames go from the node to a process; the others go to the node.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
from collections.abc import Iterator
from typing import Any, Union, cast

import msgspec

from .terms import VALUE_TYPES, Pid, Ref, Timeout, _TimeoutType

__all__ = [
    "DEFAULT_MAX_FRAME",
    "FrameError",
    "FrameReader",
    "decode",
    "decode_term",
    "encode",
    "encode_term",
    "frame",
    "mailbox_setting",
    "max_frame_setting",
]

_HEADER = struct.Struct("<I")
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
"""The default cap on one frame's body, in bytes: the node's `max_frame_bytes`."""
MAX_FRAME_ENV = "LEGION_MAX_FRAME_BYTES"
DEFAULT_MAILBOX = 256 * 1024 * 1024
"""The default bound on the bytes the node holds for one process that does not read them."""
MAILBOX_ENV = "LEGION_MAX_MAILBOX_BYTES"
_EXT_CODES = {cls: code for code, cls in enumerate(VALUE_TYPES, start=1)}


def _enc_hook(obj: Any) -> Any:
    code = _EXT_CODES.get(type(obj))
    if code is None:
        raise TypeError(f"Encoding objects of type {type(obj).__qualname__} is unsupported")
    return msgspec.msgpack.Ext(code, _encoder.encode(obj.fields()))


def _ext_hook(code: int, data: memoryview) -> Any:
    if 1 <= code <= len(VALUE_TYPES):
        cls = VALUE_TYPES[code - 1]
        if cls is _TimeoutType:
            return Timeout
        return cls(*_term_decoder.decode(data))
    return msgspec.msgpack.Ext(code, bytes(data))


def _dec_hook(type_: type, obj: Any) -> Any:
    if isinstance(obj, type_):
        return obj
    raise NotImplementedError


_plain = msgspec.msgpack.Encoder()
_plain_dec = msgspec.msgpack.Decoder()
_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_term_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


class _Frame(msgspec.Struct, tag=True, array_like=True):
    pass


# -- connection set-up ---------------------------------------------------------------------------


class Hello(_Frame):
    """First frame of an application connection."""

    sys_path: list[str]
    cwd: str
    main_path: str | None
    embedded: bool


class Boot(_Frame):
    """First frame the node sends a new process: who it is and what to run."""

    pid: Pid
    parent: Pid | None
    arg: msgspec.Raw
    has_arg: bool
    sync: bool
    max_frame: int = DEFAULT_MAX_FRAME  # the node's limit, as in Welcome
    max_mailbox: int = DEFAULT_MAILBOX  # the bytes the process may hold unhandled (mailbox.py)


class Welcome(_Frame):
    """The node's answer to `Hello`: the application connection's own pid, and the largest
    frame body the node accepts (the sender refuses a larger one: `MessageTooLarge`)."""

    pid: Pid
    max_frame: int = DEFAULT_MAX_FRAME


# -- requests to the node (from the application or a process) ------------------------------------


class Spawn(_Frame):
    req: int
    module: str
    qualname: str
    main_path: str | None
    sys_path: list[str]
    cwd: str
    arg: msgspec.Raw
    has_arg: bool
    link: bool
    monitor: Ref | None
    name: str | None
    sync: bool
    hosted: bool = False  # a node-hosted behaviour (a supervisor): runs as a task in the node


class Send(_Frame):
    to: Any  # Pid or registered name
    payload: msgspec.Raw
    req: int  # > 0: acknowledge (used when sending to a name, which must exist)


class Call(_Frame):
    to: Any
    ref: Ref
    payload: msgspec.Raw


class Reply(_Frame):
    to: Pid
    ref: Ref
    payload: msgspec.Raw


class Cast(_Frame):
    to: Any
    payload: msgspec.Raw


class CancelCall(_Frame):
    ref: Ref


class Link(_Frame):
    req: int
    pid: Pid


class Unlink(_Frame):
    req: int
    pid: Pid


class Monitor(_Frame):
    ref: Ref
    dest: Any


class Demonitor(_Frame):
    ref: Ref


class ExitSignal(_Frame):
    to: Pid
    reason: Any


class TrapExit(_Frame):
    flag: bool


class Register(_Frame):
    req: int
    name: str
    pid: Pid


class Unregister(_Frame):
    req: int
    name: str


class Whereis(_Frame):
    req: int
    name: str


class StopProcess(_Frame):
    req: int
    dest: Any
    reason: Any


class InitDone(_Frame):
    """A synchronously started process finished `init`: ok, ignored, or failed with a reason."""

    ok: bool
    ignore: bool
    reason: Any


class Exiting(_Frame):
    """The last frame of a process that ends by itself: the reason it ends with."""

    reason: Any


TelemetryEvent = tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]
"""(event, measurements, metadata)"""


class Telemetry(_Frame):
    """Telemetry events (`legion.telemetry`), never acknowledged: a process's queued events in
    one frame, or one event from an application; forwarded by the node to the applications
    that subscribed (as it came when they want every event)."""

    events: list[TelemetryEvent]


class TelemetrySubscribe(_Frame):
    """An application asks the node to forward telemetry events to it: `events` (None: every
    event), or none when `on` is false. Sent again whenever the set its handlers want changes."""

    on: bool
    events: list[list[str]] | None = None


class ServeMetrics(_Frame):
    """Serve the node's Prometheus registry on `host:port` (0: any free port); Ack: the port."""

    req: int
    host: str
    port: int


class Processes(_Frame):
    """List the node's live forked processes; Ack: `[[pid, module, qualname], ...]` (reload)."""

    req: int


class Sync(_Frame):
    """A barrier: acknowledged after every earlier frame of this connection was handled."""

    req: int


# -- frames from the node to a process ----------------------------------------------------------


class Ack(_Frame):
    req: int
    value: Any
    error: Any  # None on success, else the reason


class MessageIn(_Frame):
    payload: msgspec.Raw


class CallIn(_Frame):
    caller: Pid
    ref: Ref
    payload: msgspec.Raw


class ReplyIn(_Frame):
    ref: Ref
    payload: msgspec.Raw


class CallFailed(_Frame):
    ref: Ref
    reason: Any


class CastIn(_Frame):
    payload: msgspec.Raw


class ExitIn(_Frame):
    sender: Pid
    reason: Any


class DownIn(_Frame):
    ref: Ref
    pid: Pid | None
    name: str | None
    reason: Any


class StopIn(_Frame):
    reason: Any


Frame = Union[  # noqa: UP007 - a long union reads better as Union[...]
    Hello, Boot, Welcome, Spawn, Send, Call, Reply, Cast, CancelCall, Link, Unlink, Monitor,
    Demonitor, ExitSignal, TrapExit, Register, Unregister, Whereis, StopProcess, InitDone, Exiting,
    Sync, Ack, MessageIn, CallIn, ReplyIn, CallFailed, CastIn, ExitIn, DownIn, StopIn,
    Telemetry, TelemetrySubscribe, ServeMetrics, Processes,
]  # fmt: skip

_decoder = msgspec.msgpack.Decoder(Frame, ext_hook=_ext_hook, dec_hook=_dec_hook)

TELEMETRY_PREFIX = msgspec.msgpack.encode(Telemetry([]))[:-1]
"""How every encoded Telemetry frame body starts: lets the application hand events to its
telemetry thread without decoding them on the thread that reads the node."""


# -- node <-> zygote control frames (SOCK_SEQPACKET, fds by SCM_RIGHTS) --------------------------


class Fork(_Frame):
    id: int
    module: str
    qualname: str
    main_path: str | None
    sys_path: list[str]
    cwd: str


class Forked(_Frame):
    id: int
    os_pid: int
    error: str | None


class Reaped(_Frame):
    os_pid: int
    status: int


class ZygoteReady(_Frame):
    os_pid: int


ZygoteFrame = Fork | Forked | Reaped | ZygoteReady
_zygote_decoder = msgspec.msgpack.Decoder(ZygoteFrame)


def encode_zygote(msg: ZygoteFrame) -> bytes:
    return _plain.encode(msg)


def decode_zygote(data: bytes) -> ZygoteFrame:
    return cast(ZygoteFrame, _zygote_decoder.decode(data))


# -- codec ----------------------------------------------------------------------------------------


def encode_term(value: Any) -> msgspec.Raw:
    """Encode a user value. A value msgpack cannot carry is a `TypeError` naming its type
    (an int beyond msgpack's 64 bits included), naming the nesting limit for a value nested
    too deep to encode, or naming a str holding a lone surrogate (text the wire's UTF-8 cannot
    carry)."""
    try:
        return msgspec.Raw(_encoder.encode(value))
    except (TypeError, ValueError, OverflowError) as exc:  # a surrogate is a ValueError
        raise _unencodable(value, exc) from None
    except RecursionError:
        raise _too_deep() from None


def _unencodable(value: Any, exc: Exception) -> TypeError:
    if isinstance(exc, UnicodeEncodeError):
        return _surrogate(exc)
    culprit = _culprit(value)
    hint = ""
    if isinstance(exc, OverflowError):
        hint = "; msgpack carries ints from -2**63 to 2**64 - 1: send a larger one as a str"
    return TypeError(
        f"cannot send a value of type {culprit}: messages must be msgspec-encodable "
        "(None, bool, int, float, str, bytes, list, tuple, dict, set, msgspec.Struct, "
        f"dataclass, enum, datetime, UUID, Decimal, Pid, Ref) ({exc}{hint})"
    )


def _too_deep() -> TypeError:
    """The error for a value nested deeper than the encoder can go. msgspec encodes nested
    containers recursively, guarded by Python's recursion limit, so that limit (less the
    sender's own stack depth) is the nesting limit; a pre-walk to measure the depth would
    cost every message, so the encoder's own RecursionError is turned into this instead."""
    limit = sys.getrecursionlimit()
    return TypeError(
        f"cannot send a value nested this deep: messages are encoded recursively, so their "
        f"nesting (containers inside containers) must stay below Python's recursion limit "
        f"(sys.getrecursionlimit() = {limit}, less the sender's own call depth); flatten the "
        "value, or send it as bytes or a str you encode yourself"
    )


def _surrogate(exc: UnicodeEncodeError) -> TypeError:
    """The error for a str the wire's UTF-8 cannot carry: a lone surrogate, which is what
    `os.fsdecode` and `errors='surrogateescape'` make of bytes that are not UTF-8 (a file name
    in Latin-1, say)."""
    text = exc.object if isinstance(exc.object, str) else ""
    where = f"{text[max(0, exc.start - 30) : exc.end + 30]!r}"
    return TypeError(
        f"cannot send a str holding a lone surrogate ({text[exc.start : exc.end]!r} at index "
        f"{exc.start} of {where}): messages carry text as UTF-8, which has no surrogates; "
        "such a str usually comes from bytes decoded with errors='surrogateescape' (os.fsdecode, "
        "os.listdir, sys.argv): send the bytes instead (text.encode('utf-8', 'surrogateescape') "
        "gives them back exactly), or replace the surrogates "
        "(text.encode('utf-8', 'backslashreplace').decode())"
    )


def _culprit(value: Any) -> str:
    """The qualified name of the first value inside `value` that msgpack cannot encode."""
    stack = [value]
    while stack:
        item = stack.pop()
        try:
            _encoder.encode(item)
        except RecursionError:
            continue  # nested too deep to look into: look at the rest
        except (TypeError, ValueError, OverflowError):
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
                continue
            if isinstance(item, list | tuple | set | frozenset):
                stack.extend(item)
                continue
            if isinstance(item, _Frame):  # a protocol frame: look at its fields
                stack.extend(getattr(item, name) for name in item.__struct_fields__)
                continue
            cls = type(item)
            return f"{cls.__module__}.{cls.__qualname__}"
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def decode_term(raw: msgspec.Raw | bytes | memoryview) -> Any:
    return _term_decoder.decode(raw)


_NONE = msgspec.Raw(_plain.encode(None))


def none_term() -> msgspec.Raw:
    return _NONE


def encode(msg: Frame) -> bytes:
    """One complete frame: length header plus body. A value inside that msgpack cannot carry
    (an exit reason, say) is the same `TypeError` as `encode_term`'s."""
    try:
        body = _encoder.encode(msg)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unencodable(msg, exc) from None
    except RecursionError:
        raise _too_deep() from None
    return _HEADER.pack(len(body)) + body


def frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body)) + body


def decode(body: bytes | memoryview) -> Frame:
    return cast(Frame, _decoder.decode(body))


def send_all(sock: socket.socket, data: bytes) -> None:
    """Write all of `data` to a non-blocking socket, waiting for room when it is full.

    For synchronous writers (the application, a process's own thread); raises OSError if the
    connection is gone.
    """
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            select.select([], [sock], [])
            continue
        view = view[sent:]


def max_frame_setting(value: Any = None) -> int:
    """The node's frame limit: `value` if given, else LEGION_MAX_FRAME_BYTES, else the default.

    A ValueError names the setting when it is not an int from 1 KiB to 4 GiB - 1 (the range
    of the 4-byte length header).
    """
    return _byte_setting(value, "max_frame_bytes", MAX_FRAME_ENV, DEFAULT_MAX_FRAME, 0xFFFFFFFF)


def mailbox_setting(value: Any = None, max_frame: int = DEFAULT_MAX_FRAME) -> int:
    """The node's per-process mailbox limit in bytes: `value`, else LEGION_MAX_MAILBOX_BYTES,
    else 256 MiB (at least 4 frames of `max_frame` bytes). It must hold two such frames, so
    that one message of the largest size (with the framing the node adds) never trips it."""
    default = max(DEFAULT_MAILBOX, 4 * max_frame)
    return _byte_setting(value, "max_mailbox_bytes", MAILBOX_ENV, default, 2**62, 2 * max_frame)


def _byte_setting(
    value: Any, key: str, env: str, default: int, maximum: int, minimum: int = 1024
) -> int:
    source = key
    if value is None:
        value = os.environ.get(env) or None
        source = env
        if value is None:
            return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or not minimum <= number <= maximum:
        raise ValueError(
            f"{source} must be a number of bytes from {minimum} to {maximum}, got {value!r}"
        )
    return number


class FrameError(ValueError):
    """The byte stream is not a sequence of acceptable frames (a length beyond the limit)."""


class FrameReader:
    """Splits a byte stream into frame bodies. Feed it what the socket gave; iterate the frames.

    `limit` caps a frame's length (the node reads its peers with its `max_frame_bytes`); a larger
    length prefix is a `FrameError` as soon as the prefix arrives (the frame is never waited
    for): the stream cannot be trusted past it, so the reader's owner closes the connection.
    """

    __slots__ = ("_buf", "limit")

    def __init__(self, limit: int = 0xFFFFFFFF) -> None:
        self._buf = bytearray()
        self.limit = limit

    def pending(self) -> int:
        """Bytes received that do not complete a frame yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[bytes]:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        limit = self.limit
        try:
            while end - pos >= 4:
                (size,) = _HEADER.unpack_from(buf, pos)
                if size > limit:
                    raise FrameError(
                        f"a frame of {size} bytes exceeds the limit of {limit} bytes "
                        "(max_frame_bytes)"
                    )
                if end - pos - 4 < size:
                    break
                body = bytes(buf[pos + 4 : pos + 4 + size])
                pos += 4 + size
                yield body
        finally:
            del buf[:pos]
