"""The values every process can hold and send: pids, references, exit reasons, system messages.

`Pid`, `Ref` and `Crash` are plain slotted classes rather than msgspec Structs so that they keep
their type inside *any* message a user sends (a `Pid` inside a tuple inside a dict comes back as a
`Pid`): the wire codec carries them as msgpack extension types (see `wire.py`).

`Exit` and `Down` are what a process finds in its mailbox when a linked process dies (while it
traps exits) or a monitored one does. They are built by the receiver from protocol frames.
"""

from __future__ import annotations

import traceback as _traceback
from typing import Any, Final

__all__ = [
    "CallRequest",
    "CastRequest",
    "Crash",
    "Down",
    "Exit",
    "From",
    "GroupChange",
    "Pid",
    "Ref",
    "Timeout",
    "crash_from_exception",
    "exception_message",
    "normalize_reason",
    "utf8_safe",
]


class Value:
    """Base of the runtime's immutable value types: equality, hashing and repr from `__slots__`.

    Subclasses are carried on the wire as msgpack extension types (see `wire.py`), so they keep
    their type inside any message: a `Pid` inside a list inside a dict comes back as a `Pid`.
    Pids and refs key the node's tables and every pending call, so equality and hashing work on
    a tuple built once (`_key`) and a hash computed once.
    """

    __slots__: tuple[str, ...] = ("_hash", "_key")
    _fields: tuple[str, ...] = ()
    _key: tuple[Any, ...]
    _hash: int | None

    def __init_subclass__(cls) -> None:
        cls._fields = tuple(name for name in cls.__dict__.get("__slots__", ()))

    def __init__(self, *values: Any) -> None:
        for name, value in zip(self._fields, values, strict=True):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_key", values)
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def fields(self) -> tuple[Any, ...]:
        return self._key

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key == other._key  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        cached = self._hash
        if cached is None:
            cached = hash((type(self).__name__, *self._key))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({args})"

    def __reduce__(self) -> tuple[type[Value], tuple[Any, ...]]:
        return (type(self), self._key)


class Pid(Value):
    """The identity of a process: the node it lives on and a serial number unique on that node.

    Pids are values: compare, hash and send them freely. They are never OS process ids, so the same
    API can span several hosts.
    """

    __slots__ = ("node", "serial")
    __match_args__ = ("node", "serial")
    node: str
    serial: int

    def __init__(self, node: str, serial: int) -> None:
        super().__init__(node, serial)

    def __repr__(self) -> str:
        return f"<Pid {self.node}.{self.serial}>"


class Ref(Value):
    """A unique reference: names a monitor, a call in flight or a request. Never reused."""

    __slots__ = ("node", "owner", "n")
    __match_args__ = ("node", "owner", "n")
    node: str
    owner: int
    n: int

    def __init__(self, node: str, owner: int, n: int) -> None:
        super().__init__(node, owner, n)

    def __repr__(self) -> str:
        return f"<Ref {self.node}.{self.owner}.{self.n}>"


class Crash(Value):
    """The exit reason of a process that ended with an uncaught exception.

    It carries the exception's type (qualified name), its message and the traceback text of the
    process where it happened, so a supervisor or caller on the other side sees what went wrong.
    """

    __slots__ = ("type", "message", "traceback")
    __match_args__ = ("type", "message", "traceback")
    type: str
    message: str
    traceback: str

    def __init__(self, type: str, message: str, traceback: str = "") -> None:
        super().__init__(type, message, traceback)

    def __eq__(self, other: object) -> bool:
        return type(other) is Crash and (self.type, self.message) == (other.type, other.message)

    def __hash__(self) -> int:
        return hash((self.type, self.message))

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    def __repr__(self) -> str:
        return f"Crash({self.type!r}, {self.message!r})"


class From(Value):
    """Who is waiting for a reply: the caller's pid and the call's reference.

    `Server.handle_call` receives one; pass it to `legion.reply(from_, value)`, from this or any
    other process, to answer later. It can be sent in messages like any other value.
    """

    __slots__ = ("pid", "ref")
    __match_args__ = ("pid", "ref")
    pid: Pid
    ref: Ref

    def __init__(self, pid: Pid, ref: Ref) -> None:
        super().__init__(pid, ref)


def crash_from_exception(exc: BaseException) -> Crash:
    """The `Crash` an uncaught `exc` gives its process, whatever `exc` holds: its texts are
    made UTF-8-safe (`utf8_safe`) so the wire can always carry them, and an exception whose
    `str()` or traceback cannot be made says so in the message instead of raising."""
    cls = type(exc)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    message = exception_message(exc)
    try:
        text = "".join(_traceback.format_exception(exc))
    except Exception as failure:  # a traceback too deep to format, say: the crash still counts
        text = f"{name}: {message}\n(its traceback could not be formatted: {failure!r:.200})\n"
    return Crash(utf8_safe(name), utf8_safe(message), utf8_safe(text))


def exception_message(exc: BaseException) -> str:
    """`str(exc)`, or a text saying why there is none when the exception's `__str__` raises
    (an exception can still be reported when its message cannot)."""
    try:
        return str(exc)
    except Exception as failure:
        return f"<str() of this {type(exc).__name__} raised {type(failure).__name__}>"


def utf8_safe(text: str) -> str:
    """`text` with every lone surrogate written as a backslash escape ('\\udce9'): what the
    wire's UTF-8 can carry. A surrogate is what `errors='surrogateescape'` (`os.fsdecode`) makes
    of a byte that is not UTF-8, so an exception about a Latin-1 file name holds one."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def normalize_reason(reason: Any) -> Any:
    """Reasons cross the wire as msgpack, where tuples become lists; give tuples back."""
    if isinstance(reason, list):
        return tuple(normalize_reason(r) for r in reason)
    return reason


class Exit(Value):
    """Linked process `pid` ended with `reason` (or sent an exit signal); seen when trapping."""

    __slots__ = ("pid", "reason")
    __match_args__ = ("pid", "reason")
    pid: Pid
    reason: Any

    def __init__(self, pid: Pid, reason: Any) -> None:
        super().__init__(pid, reason)


class Down(Value):
    """The process watched by monitor `ref` ended with `reason`.

    `name` is the registered name the monitor was taken on, when it was taken by name.
    """

    __slots__ = ("ref", "pid", "reason", "name")
    __match_args__ = ("ref", "pid", "reason", "name")
    ref: Ref
    pid: Pid | None
    reason: Any
    name: str | None

    def __init__(self, ref: Ref, pid: Pid | None, reason: Any, name: str | None = None) -> None:
        super().__init__(ref, pid, reason, name)


class CallRequest(Value):
    """A `call` as a plain function process receives it. Answer with `legion.reply`."""

    __slots__ = ("from_", "request")
    __match_args__ = ("from_", "request")
    from_: From
    request: Any

    def __init__(self, from_: From, request: Any) -> None:
        super().__init__(from_, request)


class CastRequest(Value):
    """A `cast` as a plain process receives it."""

    __slots__ = ("message",)
    __match_args__ = ("message",)
    message: Any

    def __init__(self, message: Any) -> None:
        super().__init__(message)


class GroupChange(Value):
    """A `legion.pg` monitor notice: `pids` joined or left `group` (`kind` "join" or "leave").

    `ref` is the reference `pg.monitor`/`pg.monitor_scope` returned.
    """

    __slots__ = ("ref", "kind", "group", "pids")
    __match_args__ = ("ref", "kind", "group", "pids")
    ref: Ref
    kind: str
    group: Any
    pids: list[Pid]

    def __init__(self, ref: Ref, kind: str, group: Any, pids: list[Pid]) -> None:
        super().__init__(ref, kind, normalize_reason(group), list(pids))


class CodeChange(Value):
    """The system request `legion.code_change` sends a server (see `Server.code_change`)."""

    __slots__ = ("extra", "reload")
    __match_args__ = ("extra", "reload")
    extra: Any
    reload: bool | list[str]
    """True: reload the server's own module; a list: the modules `legion.reload` changed."""

    def __init__(self, extra: Any, reload: bool | list[str]) -> None:
        super().__init__(extra, reload)


class _TimeoutType(Value):
    __slots__ = ()

    def __repr__(self) -> str:
        return "legion.Timeout"


Timeout: Final = _TimeoutType()
"""The message a `Server` receives in `handle_info` when its idle timeout expires."""


class CallProgress(Value):
    """Sent by a callee that accepted a call whose answer will take long (an agent's turn): a
    caller using `call`'s default timeout then waits without limit."""

    __slots__ = ("ref",)
    __match_args__ = ("ref",)
    ref: Ref

    def __init__(self, ref: Ref) -> None:
        super().__init__(ref)


VALUE_TYPES: tuple[type[Value], ...] = (
    Pid, Ref, Crash, From, Exit, Down, CallRequest, CastRequest, _TimeoutType, CodeChange,
    GroupChange, CallProgress,
)  # fmt: skip
"""Extension-type codes on the wire are 1 + the index in this tuple: never reorder it."""
