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

import atexit
import logging
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .supervisor.terms import Pid, exception_message

__all__ = [
    "EVENTS",
    "Event",
    "Handler",
    "Span",
    "SpanInfo",
    "attach",
    "attach_default_logger",
    "detach",
    "detach_default_logger",
    "emit",
    "flush",
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
"""Where this process's events go after its own handlers: set by the node for itself, found on
first use in a runtime process (its connection), None in the application until then."""


def _forget_after_fork() -> None:
    global _forward, _delivery, _arrived, _arrival, _delivery_lock
    _forward = None
    _arrived, _arrival, _delivery_lock = deque(), threading.Event(), threading.Lock()
    _delivery = None  # threads do not survive fork: the child starts its own on first use


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
    _subscribe()


def detach(handler_id: str) -> bool:
    """Remove a handler; False if no handler had that id."""
    if _handlers.pop(handler_id, None) is None:
        return False
    _rebuild()
    _subscribe()
    return True


def list_handlers() -> list[str]:
    """The ids of the handlers attached in this process."""
    return list(_handlers)


def _subscribe() -> None:
    """In the application: tell the node which events to forward here (those some handler
    attached here wants; none once the last one is detached)."""
    from .supervisor import client, process, wire

    if process.current() is not None or _forward is not None:
        return  # inside an agent process, or inside the node: events are local
    wanted: list[list[str]] | None = None
    if not _everything:
        wanted = [list(event) for event in _index]
    if _handlers:
        endpoint = client.get()
    else:
        current = client.current()
        if current is None:
            return
        endpoint = current
    endpoint.send_frame(wire.TelemetrySubscribe(bool(_handlers), wanted))


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
    """Emit `event`: call this process's handlers, then send it to the node.

    From a runtime process the event leaves with the process's next frame; from the application
    it is sent at once if the application is connected to a node (and not forwarded back to it).
    """
    if not ENABLED:
        return
    meas = dict(measurements) if measurements else {}
    meta = {**_context, **metadata} if metadata else dict(_context)
    _emit(event, meas, meta)


def _emit(event: Event, meas: dict[str, Any], meta: dict[str, Any]) -> None:
    """`emit` for dicts made for this event alone (the context already merged into `meta`)."""
    if _index or _everything:
        dispatch(event, meas, meta)
    forward = _forward or _find_forward()
    forward(event, meas, meta)


def has_handlers() -> bool:
    """Whether any handler is attached in this process."""
    return bool(_handlers)


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


# -- delivery in the application ---------------------------------------------------------------

DELIVERY_DELAY = 0.02
"""Seconds the application's telemetry thread lets events gather before it runs the handlers:
one wake-up per burst rather than per event (a turn emits six or more in about a ms)."""

_arrived: deque[Any] = deque()  # Telemetry frames read from the node (encoded), flush markers
_arrival = threading.Event()
_delivery: threading.Thread | None = None
_delivery_lock = threading.Lock()


def deliver_later(frames: list[bytes]) -> None:
    """Hand Telemetry frames the application read from the node to the telemetry thread.

    The thread that reads the node (one waiting on a `legion.call`, say) only queues the bytes:
    decoding the events and running the handlers happen on the telemetry thread."""
    if _delivery is None:
        _start_delivery()
    _arrived.extend(frames)
    if not _arrival.is_set():
        _arrival.set()


def flush(timeout: float | None = 10.0) -> bool:
    """In the application: wait until the handlers have run for every event read from the node
    so far; False on timeout. (Events reach the application while it talks to the node.)
    `timeout` follows the runtime's rule: seconds >= 0 or None (no limit); NaN or a negative
    number is a ValueError."""
    from .supervisor.api import check_timeout

    timeout = check_timeout(timeout, "legion.telemetry.flush")
    if timeout is not None and timeout > threading.TIMEOUT_MAX:
        timeout = None
    thread = _delivery
    if thread is None or not thread.is_alive() or thread is threading.current_thread():
        return True
    done = threading.Event()
    _arrived.append(done)
    _arrival.set()
    return done.wait(timeout)


def _start_delivery() -> None:
    global _delivery
    with _delivery_lock:
        if _delivery is None:
            _delivery = threading.Thread(target=_deliver, name="legion-telemetry", daemon=True)
            _delivery.start()


def _deliver() -> None:
    from .supervisor import wire

    arrived, arrival = _arrived, _arrival
    while True:
        arrival.wait()
        time.sleep(DELIVERY_DELAY)
        arrival.clear()  # an arrival from here on sets it again
        while arrived:
            item = arrived.popleft()
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                frame = wire.decode(item)
            except Exception:
                log.exception("telemetry: dropped a malformed frame from the node")
                continue
            if type(frame) is wire.Telemetry:
                for event, measurements, metadata in frame.events:
                    dispatch(event, measurements, metadata)


def _find_forward() -> Callable[[Event, dict[str, Any], dict[str, Any]], None]:
    """In a runtime process: queue events for the node (kept for the life of the process).
    In the application: send them on its connection, if it has one (looked up at each event)."""
    global _forward
    from .supervisor import client, process, wire

    worker = process.current()
    if worker is not None:
        queue_event = worker.queue_event

        def to_node(event: Event, meas: dict[str, Any], meta: dict[str, Any]) -> None:
            queue_event((event, meas, plain(meta)))  # encoded with the batch it leaves in

        _forward = to_node
        return to_node

    def from_application(event: Event, meas: dict[str, Any], meta: dict[str, Any]) -> None:
        connection = client.current()
        if connection is None or connection._gone is not None:
            return
        try:
            connection.send_frame(wire.Telemetry([(event, meas, plain(meta))]))
        except Exception:  # the node is going away: the event stays local
            pass

    return from_application


def set_forward(forward: Callable[[Event, dict[str, Any], dict[str, Any]], None] | None) -> None:
    """Where this process's events go after its own handlers (the node installs its sink)."""
    global _forward
    _forward = forward


_PLAIN_TYPES = frozenset({int, float, bool, type(None), Pid})


def plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata that the wire can carry: scalars and pids as they are, the rest as a short repr.

    On every event's path: type lookups, not isinstance chains, and no copy when every value
    already fits (the usual case)."""
    for value in metadata.values():
        kind = type(value)
        if (kind is not str or len(value) > 2000) and kind not in _PLAIN_TYPES:
            break
    else:
        return metadata
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        kind = type(value)
        if kind is str:
            out[key] = value if len(value) <= 2000 else value[:2000]
        elif kind in _PLAIN_TYPES:
            out[key] = value
        else:
            text = _repr(value)
            out[key] = text if len(text) <= 2000 else text[:2000] + "..."
    return out


def _repr(value: Any) -> str:
    """`repr(value)`, or a text saying why not: an event is never lost (nor its emitter
    crashed) because a metadata value nested too deep or with a failing `__repr__` has none."""
    try:
        return repr(value)
    except Exception as exc:  # RecursionError for a deeply nested value, say
        return f"<{type(value).__qualname__}: repr() raised {type(exc).__name__}>"


class SpanInfo(dict[str, Any]):
    """What a span's block adds to its stop event: metadata (the dict) and `measurements`."""

    measurements: dict[str, Any]


def span(prefix: Event, metadata: Mapping[str, Any] | None = None) -> Span:
    """Emit `prefix + ("start",)`, run the block, then `prefix + ("stop",)` with its `duration`.

    The block receives a `SpanInfo`: a dict whose items are added to the stop event's metadata,
    with a `measurements` dict added to its measurements. If the block raises,
    `prefix + ("exception",)` is emitted instead (metadata adds `kind` and `reason`) and the
    exception propagates.
    """
    return Span(prefix, metadata)


_PHASES: dict[Event, tuple[Event, Event, Event]] = {}


class Span:
    """The context manager `span` returns (a class: a turn runs several, on the hot path)."""

    __slots__ = ("_info", "_meta", "_phases", "_started")

    def __init__(self, prefix: Event, metadata: Mapping[str, Any] | None) -> None:
        phases = _PHASES.get(prefix)
        if phases is None:
            phases = _PHASES[prefix] = (
                (*prefix, "start"), (*prefix, "stop"), (*prefix, "exception")
            )  # fmt: skip
        self._phases = phases
        self._meta = dict(metadata) if metadata else {}

    def __enter__(self) -> SpanInfo:
        self._started = time.perf_counter()
        if ENABLED:
            _emit(self._phases[0], {"system_time": time.time()}, {**_context, **self._meta})
        info = self._info = SpanInfo()
        info.measurements = {}
        return info

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if not ENABLED:
            return
        info = self._info
        meas = {**info.measurements, "duration": time.perf_counter() - self._started}
        if exc is None:
            _emit(self._phases[1], meas, {**_context, **self._meta, **info})
        else:
            failure = {"kind": type(exc).__name__, "reason": exception_message(exc)[:500]}
            _emit(self._phases[2], meas, {**_context, **self._meta, **info, **failure})


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

    In the application the lines are written by the telemetry thread (see `flush`), so logging
    never delays the thread that reads the node.
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
    """Remove the default logger, after it has written the lines of every event received so
    far (`flush`)."""
    flush()
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
    ms = _duration(measurements)
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
        key = str(run_id).encode("utf-8", "surrogatepass")
        shade = _COLOURS[zlib.crc32(key) % len(_COLOURS)] if run_id else 37
        marker = f"\x1b[{shade}m{marker}\x1b[0m"
    return level, f"{marker} {indent}{text}"


def _duration(measurements: Mapping[str, Any]) -> str:
    """ " 12.5ms" for a `duration` in seconds; one that is not a number (an event a user emits
    by hand with a duration of None, say) is shown as it is rather than failing the line."""
    if "duration" not in measurements:
        return ""
    value = measurements["duration"]
    if isinstance(value, int | float):
        return f" {value * 1000:.1f}ms"
    return f" duration={repr(value)[:40]}"


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _log_event(
    event: Event, measurements: dict[str, Any], metadata: dict[str, Any], config: Any
) -> None:
    floor = config["level"]
    if not log.isEnabledFor(max(floor, logging.ERROR)):
        return  # nothing this event could log would be written: do not format it
    try:
        level, line = format_event(event, measurements, metadata, config["colour"])
    except Exception as exc:  # this line only: the logger stays attached for every other one
        _unformattable(event, exc)
        return
    level = max(level, floor) if level > logging.INFO else floor
    if log.isEnabledFor(level):
        # makeRecord + handle: `log.log` would walk the stack for a caller that is always here
        log.handle(log.makeRecord(log.name, level, __file__, 0, line, (), None))


_reported: set[Event] = set()  # bounded: the default logger wants only the names in EVENTS


def _unformattable(event: Event, exc: Exception) -> None:
    """The default logger could not format an event (one a user emitted by hand under one of
    Legion's names, with values of odd types): its line is dropped, and the first such failure
    of each event name is reported on stderr with its traceback. The logger is not detached
    (which `dispatch` does to a handler that raises), so every later line is still written."""
    if event in _reported:
        return
    _reported.add(event)
    import sys
    import traceback

    text = "".join(traceback.format_exception(exc))
    try:
        sys.stderr.write(
            f"legion: the default telemetry logger dropped a line it could not format for "
            f"{event!r} (reported once per event name):\n{text}"
        )
    except Exception:  # stderr cannot take it: nowhere left to say so
        pass


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(flush, 5.0)
