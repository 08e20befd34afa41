"""Telemetry events: Legion's `:telemetry` events, in Python, across processes.

An event is a tuple of names (`("legion", "agent", "message", "stop")`), a dict of measurements
(numbers: `duration` in seconds, `system_time` in Unix seconds, token counts) and a dict of
metadata (`agent`, `run_id`, `parent_run_id`, `model`, `action`, `outcome`, ...).

`emit` calls the handlers attached in the current process and, inside a process of the runtime,
forwards the event to the node in one frame sent without waiting for an answer. The node feeds
its Prometheus registry (`legion.metrics`) with every event and passes each one on to every
application that attached a handler, so a handler attached in the application receives the events
of every agent process. The node emits the runtime's own events (process spawned/exited,
supervisor restarts) the same way.

Handlers are called as `handler(event, measurements, metadata, config)`. In the application they
run on whichever thread is reading the node's socket (a thread waiting on a `legion.call`, say):
they must be quick and must not call the process API. A handler that raises is detached and
logged, as in Erlang's `telemetry`.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .supervisor.terms import Pid

__all__ = [
    "EVENTS",
    "Event",
    "Handler",
    "SpanInfo",
    "attach",
    "attach_default_logger",
    "detach",
    "detach_default_logger",
    "emit",
    "list_handlers",
    "serve_metrics",
    "span",
]

Event = tuple[str, ...]
Handler = Callable[[Event, dict[str, Any], dict[str, Any], Any], Any]

log = logging.getLogger("legion.telemetry")


def _span_events(*prefix: str) -> list[Event]:
    return [(*prefix, "start"), (*prefix, "stop"), (*prefix, "exception")]


AGENT_STARTED: Event = ("legion", "agent", "started")
AGENT_STOPPED: Event = ("legion", "agent", "stopped")
MESSAGE: Event = ("legion", "agent", "message")
ITERATION: Event = ("legion", "iteration")
LLM_REQUEST: Event = ("legion", "llm", "request")
SANDBOX_EVAL: Event = ("legion", "sandbox", "eval")
TOOL_CALL: Event = ("legion", "tool", "call")
HUMAN_INPUT_REQUIRED: Event = ("legion", "human", "input_required")
HUMAN_INPUT_RECEIVED: Event = ("legion", "human", "input_received")
PROCESS_SPAWNED: Event = ("legion", "process", "spawned")
PROCESS_EXITED: Event = ("legion", "process", "exited")
SUPERVISOR_RESTART: Event = ("legion", "supervisor", "restart")
RELOAD: Event = ("legion", "reload")

EVENTS: tuple[Event, ...] = (
    AGENT_STARTED,
    AGENT_STOPPED,
    *_span_events(*MESSAGE),
    *_span_events(*ITERATION),
    *_span_events(*LLM_REQUEST),
    *_span_events(*SANDBOX_EVAL),
    *_span_events(*TOOL_CALL),
    HUMAN_INPUT_REQUIRED,
    HUMAN_INPUT_RECEIVED,
    PROCESS_SPAWNED,
    PROCESS_EXITED,
    SUPERVISOR_RESTART,
    RELOAD,
)
"""Every event Legion emits."""


@dataclass(slots=True)
class _Attached:
    handler_id: str
    events: frozenset[Event] | None  # None: every event
    handler: Handler
    config: Any


_handlers: dict[str, _Attached] = {}
_index: dict[Event, list[_Attached]] = {}
_everything: list[_Attached] = []
_context: dict[str, Any] = {}
"""Metadata added to every event emitted by this process (the agent, its run ids)."""

_forward: Callable[[Event, dict[str, Any], dict[str, Any]], None] | None = None
_forward_pid = -1

ENABLED = os.environ.get("LEGION_TELEMETRY", "1") != "0"
"""`LEGION_TELEMETRY=0` in the environment of the application (before the node starts) turns
every `emit` into a no-op: no events, no metrics fed by events (used to measure the cost)."""


def _rebuild() -> None:
    _index.clear()
    _everything.clear()
    for attached in _handlers.values():
        if attached.events is None:
            _everything.append(attached)
        else:
            for event in attached.events:
                _index.setdefault(event, []).append(attached)


def _normalize_events(events: Event | Iterable[Event] | None) -> frozenset[Event] | None:
    if events is None:
        return None
    if isinstance(events, tuple) and all(isinstance(part, str) for part in events):
        return frozenset([events])
    result = []
    for event in events:  # type: ignore[union-attr]
        if not isinstance(event, tuple) or not all(isinstance(p, str) for p in event):
            raise TypeError(f"an event is a tuple of str such as ('legion', 'llm'), got {event!r}")
        result.append(event)
    return frozenset(result)


def attach(
    handler_id: str,
    events: Event | Iterable[Event] | None,
    handler: Handler,
    config: Any = None,
) -> None:
    """Call `handler(event, measurements, metadata, config)` for each of `events` (None: all).

    In the application this also asks the node to forward every process's events here (it
    connects to the node, starting an embedded one if none is running yet). Attaching an id
    twice raises ValueError.
    """
    if handler_id in _handlers:
        raise ValueError(f"a telemetry handler with id {handler_id!r} is already attached")
    if not callable(handler):
        raise TypeError(f"a telemetry handler must be callable, got {handler!r}")
    _handlers[handler_id] = _Attached(handler_id, _normalize_events(events), handler, config)
    _rebuild()
    if len(_handlers) == 1:
        _subscribe(True)


def detach(handler_id: str) -> bool:
    """Remove a handler; False if no handler had that id."""
    if _handlers.pop(handler_id, None) is None:
        return False
    _rebuild()
    if not _handlers:
        _subscribe(False)
    return True


def list_handlers() -> list[str]:
    """The ids of the handlers attached in this process."""
    return list(_handlers)


def _subscribe(on: bool) -> None:
    """In the application: tell the node whether to forward events to this connection."""
    from .supervisor import client, process, wire

    if process.current() is not None or _forward is not None:
        return  # inside an agent process, or inside the node: events are local
    if on:
        endpoint = client.get()
    else:
        current = client.current()
        if current is None:
            return
        endpoint = current
    endpoint.send_frame(wire.TelemetrySubscribe(on))


def serve_metrics(port: int = 0, host: str = "127.0.0.1") -> int:
    """Have the node serve its Prometheus registry on `http://host:port/metrics`; the port.

    Port 0 picks a free port. Asking again for an address already served returns its port.
    Connects to the node (starting an embedded one if needed).
    """
    from .supervisor import client

    return client.get().serve_metrics(port, host)


def set_context(**metadata: Any) -> None:
    """Add metadata to every event this process emits from now on (an agent's run ids)."""
    _context.update({k: v for k, v in metadata.items() if v is not None})


def emit(
    event: Event,
    measurements: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Emit `event`: call this process's handlers, and forward it to the node from a process."""
    if not ENABLED:
        return
    meas = dict(measurements) if measurements else {}
    meta = {**_context, **metadata} if metadata else dict(_context)
    dispatch(event, meas, meta)
    forward = _forward
    if forward is None or _forward_pid != os.getpid():
        forward = _find_forward()
    if forward is not None:
        forward(event, meas, meta)


def dispatch(event: Event, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Call the handlers attached here for `event` (used for events that arrive from the node)."""
    targets = _index.get(event)
    if targets is None and not _everything:
        return
    for attached in [*(targets or ()), *_everything]:
        try:
            attached.handler(event, measurements, metadata, attached.config)
        except Exception:
            log.exception(
                "telemetry handler %r failed on %s and was detached", attached.handler_id, event
            )
            detach(attached.handler_id)


def _find_forward() -> Callable[[Event, dict[str, Any], dict[str, Any]], None] | None:
    """In a runtime process: send events to the node. Elsewhere (the application): nowhere."""
    global _forward, _forward_pid
    from .supervisor import process

    worker = process.current()
    if worker is None:
        return None
    from .supervisor import wire

    def to_node(event: Event, meas: dict[str, Any], meta: dict[str, Any]) -> None:
        worker.queue_event(wire.encode(wire.Telemetry(list(event), meas, plain(meta))))

    _forward, _forward_pid = to_node, os.getpid()
    return to_node


def set_forward(forward: Callable[[Event, dict[str, Any], dict[str, Any]], None] | None) -> None:
    """Where this process's events go after its own handlers (the node installs its sink)."""
    global _forward, _forward_pid
    _forward, _forward_pid = forward, os.getpid()


_PLAIN_TYPES = frozenset({int, float, bool, type(None), Pid})


def plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata that the wire can carry: scalars and pids as they are, the rest as a short repr.

    On every event's path: type lookups, not isinstance chains."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        kind = type(value)
        if kind is str:
            out[key] = value if len(value) <= 2000 else value[:2000]
        elif kind in _PLAIN_TYPES:
            out[key] = value
        else:
            text = repr(value)
            out[key] = text if len(text) <= 2000 else text[:2000] + "..."
    return out


class SpanInfo(dict[str, Any]):
    """What a span's block adds to its stop event: metadata (the dict) and `measurements`."""

    measurements: dict[str, Any]


@contextmanager
def span(prefix: Event, metadata: Mapping[str, Any] | None = None) -> Iterator[SpanInfo]:
    """Emit `prefix + ("start",)`, run the block, then `prefix + ("stop",)` with its `duration`.

    The block receives a `SpanInfo`: a dict whose items are added to the stop event's metadata,
    with a `measurements` dict added to its measurements. If the block raises,
    `prefix + ("exception",)` is emitted instead (metadata adds `kind` and `reason`) and the
    exception propagates.
    """
    meta = dict(metadata) if metadata else {}
    started = time.perf_counter()
    emit((*prefix, "start"), {"system_time": time.time()}, meta)
    extra = SpanInfo()
    extra.measurements = {}
    try:
        yield extra
    except BaseException as exc:
        reason = str(exc)
        emit(
            (*prefix, "exception"),
            {**extra.measurements, "duration": time.perf_counter() - started},
            {**meta, **extra, "kind": type(exc).__name__, "reason": reason[:500]},
        )
        raise
    emit(
        (*prefix, "stop"),
        {**extra.measurements, "duration": time.perf_counter() - started},
        {**meta, **extra},
    )


# -- the default logger ------------------------------------------------------------------------

DEFAULT_LOGGER_ID = "legion-default-logger"
_COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94)
_GROUPS: dict[str, tuple[str, ...]] = {
    "agent": ("agent",),
    "message": ("message",),
    "iteration": ("iteration",),
    "llm": ("llm",),
    "sandbox": ("sandbox",),
    "tool": ("tool",),
    "human": ("human",),
    "runtime": ("process", "supervisor", "reload"),
}


def _group(event: Event) -> str:
    if len(event) >= 3 and event[1] == "agent" and event[2] == "message":
        return "message"
    if len(event) >= 2:
        return "runtime" if event[1] in _GROUPS["runtime"] else event[1]
    return "?"


def attach_default_logger(
    level: int | str = logging.INFO, events: Iterable[str] | str = "all", colour: bool = True
) -> None:
    """Log one readable line per event on the `legion.telemetry` logger.

    `events` is "all" or some of "agent", "message", "iteration", "llm", "sandbox", "tool",
    "human", "runtime". Lines are indented by nesting (turn, iteration, request/evaluation, tool
    call) and prefixed with a marker coloured per run (`┃▸` for a sub-agent).
    """
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            raise ValueError(f"unknown log level {level!r}")
    groups = set(_GROUPS) if events == "all" else set(events)
    unknown = groups - set(_GROUPS)
    if unknown:
        raise ValueError(f"unknown event groups {sorted(unknown)}; choose from {sorted(_GROUPS)}")
    wanted = [e for e in EVENTS if _group(e) in groups]
    attach(DEFAULT_LOGGER_ID, wanted, _log_event, {"level": level, "colour": colour})


def detach_default_logger() -> bool:
    return detach(DEFAULT_LOGGER_ID)


_INDENT = {"agent": 0, "message": 0, "runtime": 0, "iteration": 2, "llm": 4, "sandbox": 4}


def format_event(
    event: Event, measurements: Mapping[str, Any], metadata: Mapping[str, Any], colour: bool
) -> tuple[int, str]:
    """The default logger's (level, line) for one event."""
    group = _group(event)
    phase = event[-1]
    name = metadata.get("agent", "")
    level = logging.INFO
    ms = f" {measurements['duration'] * 1000:.1f}ms" if "duration" in measurements else ""
    label = f"{'eval' if group == 'sandbox' else group}:{phase}"
    if group == "agent":
        text = f"agent:{phase} {name}"
        if phase == "stopped":
            text += f" reason={metadata.get('reason', 'normal')}"
    elif group == "message":
        if phase == "start":
            text = f"{label} {name} {_short(metadata.get('message'), 80)}"
        else:
            outcome = metadata.get("outcome", "")
            text = f"{label} {name} {outcome} iterations={metadata.get('iterations', '?')}{ms}"
    elif group == "iteration":
        text = f"{label} {name} #{metadata.get('iteration', '?')}"
        if phase != "start":
            text += f" action={metadata.get('action')} {metadata.get('outcome', '')}{ms}"
    elif group == "llm":
        text = f"{label} {metadata.get('model', '')}"
        if phase == "start":
            text += f" messages={metadata.get('message_count', '?')}"
        else:
            tokens = ""
            if "input_tokens" in measurements:
                used = (measurements["input_tokens"], measurements.get("output_tokens", 0))
                tokens = f" tokens={used[0]}+{used[1]}"
            text += f"{tokens}{ms}"
    elif group == "sandbox":
        if phase == "start":
            code = str(metadata.get("code", ""))
            text = label + "".join("\n      " + line for line in code.splitlines()[:20])
        else:
            outcome = metadata.get("outcome", "?")
            text = f"{label} {outcome}{ms}"
            if outcome != "ok" and metadata.get("error"):
                text += f"\n      {_short(metadata.get('error'), 200)}"
                level = logging.WARNING
    elif group == "tool":
        text = f"      {label} {metadata.get('tool', '')}.{metadata.get('function', '')}"
        if phase != "start":
            text += f" {metadata.get('outcome', '')}{ms}"
    elif group == "human":
        text = f"      human:{phase} {name}"
        if "question" in metadata:
            text += f" {_short(metadata['question'], 80)}"
        text += ms
    elif group == "runtime":
        keys = ("pid", "module", "agent", "reason", "supervisor", "child")
        pairs = " ".join(f"{k}={metadata[k]}" for k in keys if k in metadata)
        text = ":".join(event[1:]) + " " + pairs
    else:
        text = f"unhandled event {event}"
        level = logging.WARNING
    if phase == "exception":
        text += f" {metadata.get('kind', '')}: {_short(metadata.get('reason'), 200)}"
        level = logging.ERROR
    indent = " " * _INDENT.get(group, 0)
    marker = "┃▸" if metadata.get("parent_run_id") else "┃ "
    run_id = metadata.get("run_id")
    if colour:
        shade = _COLOURS[zlib.crc32(str(run_id).encode()) % len(_COLOURS)] if run_id else 37
        marker = f"\x1b[{shade}m{marker}\x1b[0m"
    return level, f"{marker} {indent}{text}"


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _log_event(
    event: Event, measurements: dict[str, Any], metadata: dict[str, Any], config: Any
) -> None:
    level, line = format_event(event, measurements, metadata, config["colour"])
    log.log(max(level, config["level"]) if level > logging.INFO else config["level"], line)
