"""What an evaluation returns: :class:`Evaluation`, :class:`Bindings` and the outcome kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ErrorKind = Literal["exception", "timeout", "memory", "cpu", "forbidden", "crashed", "output_limit"]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "exception",
    "timeout",
    "memory",
    "cpu",
    "forbidden",
    "crashed",
    "output_limit",
)


@dataclass(frozen=True, slots=True)
class Bindings:
    """Variables carried from one evaluation to the next, as an opaque blob.

    Only sandboxed children decode ``blob`` (it is a pickle written by a child); the parent
    never does. Store it as bytes (``Bindings(blob, names)``) to persist a conversation.
    """

    blob: bytes
    names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Bindings(names={list(self.names)!r}, {len(self.blob)} bytes)"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of one evaluation.

    * ``ok``: the code ran to the end.
    * ``value``: the value of the last expression when it is msgpack-native (str, int, float,
      bool, None, bytes, list, dict, datetime, ...); otherwise its ``repr`` string.
      ``value_repr`` is always the repr.
    * ``stdout``: what ``print`` wrote (capped).
    * ``error``: plain words for the LLM ("line 2: ZeroDivisionError: division by zero",
      "timeout after 5.0 s", ...); ``error_kind`` one of :data:`ERROR_KINDS`.
    * ``traceback``: a short traceback whose line numbers are those of the code as written.
    * ``variables``: variable name -> short repr, after this evaluation.
    * ``bindings``: pass to the next evaluation; after a failure it is the previous bindings.
    * ``dropped``: variables that could not be carried over (a generator, a value too large or
      nested too deeply, one the restore could not bring back); ``dropped_reasons`` says why,
      by name. They are not in ``variables`` nor in ``bindings.names``.
    * ``layers``: the protection layers that were active in the child.
    """

    ok: bool
    value: Any = None
    value_repr: str = ""
    stdout: str = ""
    error: str = ""
    error_kind: ErrorKind | None = None
    traceback: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    bindings: Bindings | None = None
    dropped: tuple[str, ...] = ()
    dropped_reasons: dict[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    duration: float = 0.0
