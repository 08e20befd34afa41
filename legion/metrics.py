"""The node's Prometheus registry, fed by telemetry events, and its `/metrics` endpoint.

One `CollectorRegistry` lives in the node (never prometheus-client's multiprocess mode): every
process forwards its events to the node (`legion.telemetry`), and `NodeMetrics.handle` turns each
into counter and histogram updates. What the node already counts (processes alive, messages
routed, agents running) is read at scrape time by a custom collector, so routing a message costs
one integer increment. Names follow Prometheus conventions (base units, `_total` counters) and the
OpenTelemetry GenAI conventions for LLM calls; every label value comes from a small closed set or
from the application's own class, tool and model names (never run ids, pids or free text).

Label values that come from users and code (agent, model, tool and supervisor names, exception
class names) are capped: each label keeps its first `MAX_LABEL_VALUES` distinct values, and
later ones are counted under `other` (and in `legion_metrics_label_overflow_total{label}`), so
a workload that invents names cannot grow the registry without bound.

`/metrics` is served by a small trio HTTP handler inside the node, on loopback by default, when
the application asks (`legion.configure(metrics_port=...)`, `legion.serve_metrics`, or
`legion node --metrics-port`). The text is rendered on a worker thread, so a large scrape never
holds up the node's event loop (and the calls it routes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from . import telemetry as t

if TYPE_CHECKING:
    from .supervisor.node import Node

__all__ = ["MAX_LABEL_VALUES", "OVERFLOW", "NodeMetrics", "serve_metrics"]

log = logging.getLogger("legion.node")

# OpenTelemetry GenAI advised buckets.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)  # fmt: skip
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16 ... 67,108,864
AGENT_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6)
SANDBOX_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)  # fmt: skip
HUMAN_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)

ACTIONS = ("return", "done", "eval_and_continue", "eval_and_complete")
SANDBOX_OUTCOMES = ("ok", "exception", "timeout", "memory", "cpu", "forbidden", "crashed",
                    "output_limit")  # fmt: skip
VIOLATIONS = ("timeout", "memory", "cpu", "forbidden", "crashed", "output_limit")
EXIT_REASONS = ("normal", "shutdown", "killed", "crash", "other")

OVERFLOW = "other"
"""The value a capped label takes once it has seen `MAX_LABEL_VALUES` distinct values."""


def _max_label_values() -> int:
    text = os.environ.get("LEGION_METRICS_MAX_LABEL_VALUES", "100")
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise ValueError(
            f"LEGION_METRICS_MAX_LABEL_VALUES must be an int >= 1 (distinct values a metric "
            f"label keeps before it counts new ones as {OVERFLOW!r}), not {text!r}"
        )
    return value


MAX_LABEL_VALUES = _max_label_values()
"""Distinct values each user-named label (agent, model, tool, supervisor, error_type) keeps;
`LEGION_METRICS_MAX_LABEL_VALUES` in the node's environment sets it (default 100)."""
CAPPED_LABELS = ("agent", "model", "tool", "supervisor", "error_type")


def reason_class(reason: Any) -> str:
    """An exit reason as a bounded label value."""
    if reason in ("normal", "shutdown", "killed", "kill"):
        return "killed" if reason == "kill" else str(reason)
    if isinstance(reason, tuple | list) and reason and reason[0] == "shutdown":
        return "shutdown"
    if type(reason).__name__ == "Crash":
        return "crash"
    return "other"


def _label(value: Any, default: str = "unknown") -> str:
    if value is None or value == "":
        return default
    text = str(value)
    return text if len(text) <= 100 else text[:100]


class LabelCap:
    """One user-named label: its first `limit` distinct values pass, later ones become
    `OVERFLOW`, and each event that used `OVERFLOW` instead of its own value is counted.

    Values are never forgotten, so a name keeps its own series (or `other`) for the life of
    the node, whichever metric it appears in."""

    __slots__ = ("limit", "owner", "overflow", "seen")

    def __init__(self, owner: NodeMetrics, name: str, limit: int) -> None:
        self.owner = owner
        self.limit = limit
        self.seen: set[str] = set()
        self.overflow = owner.label_overflow.labels(name)

    def __call__(self, value: Any, default: str = "unknown") -> str:
        text = _label(value, default)
        if text in self.seen:
            return text
        if len(self.seen) < self.limit:
            self.seen.add(text)
            return text
        self.overflow.inc()
        self.owner.folded(self.overflow)
        return OVERFLOW

    def peek(self, value: Any) -> str:
        """The label `value` would get, without counting it (for gauges read at scrape)."""
        text = _label(value)
        return text if text in self.seen or len(self.seen) < self.limit else OVERFLOW


class _RuntimeCollector(Collector):
    """Read what the node counts anyway, at scrape time.

    The node's tables change on its event loop, so `collect` runs there (`NodeMetrics.scrape`
    takes its families before rendering on a thread); it is not in the registry."""

    def __init__(self, node: Node | None) -> None:
        self.node = node
        self.metrics: NodeMetrics | None = None

    def collect(self) -> Iterator[Metric]:
        node = self.node
        procs = GaugeMetricFamily(
            "legion_processes", "Processes alive in the node, by kind.", labels=["kind"]
        )
        agents = GaugeMetricFamily(
            "legion_agents_running", "Agent processes running, by agent class.", labels=["agent"]
        )
        counts = {"process": 0, "hosted": 0, "application": 0}
        running: dict[str, int] = {}
        for proc in node.procs.values() if node is not None else ():
            hosted = proc.host is not None
            kind = "application" if proc.is_app else "hosted" if hosted else "process"
            counts[kind] += 1
            if proc.agent is not None:
                agent = self.metrics.agent.peek(proc.agent) if self.metrics else proc.agent
                running[agent] = running.get(agent, 0) + 1
        for kind, n in counts.items():
            procs.add_metric([kind], n)
        for agent, n in sorted(running.items()):
            agents.add_metric([agent], n)
        messages = CounterMetricFamily(
            "legion_messages_routed",
            "Messages, calls, casts and replies routed by the node.",
            value=node.routed if node is not None else 0,
        )
        events = CounterMetricFamily(
            "legion_telemetry_events",
            "Telemetry events handled by the node.",
            value=self.metrics.events if self.metrics is not None else 0,
        )
        dropped = CounterMetricFamily(
            "legion_telemetry_dropped",
            "Telemetry events not forwarded to an application that left too much unread.",
            value=self.metrics.dropped if self.metrics is not None else 0,
        )
        yield procs
        yield agents
        yield messages
        yield events
        yield dropped


class _Exposition(Collector):
    """What one scrape shows: the runtime's families (taken on the loop) and the registry."""

    def __init__(self, registry: CollectorRegistry, runtime: list[Metric]) -> None:
        self.registry = registry
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        yield from self.runtime
        yield from self.registry.collect()


class NodeMetrics:
    """The registry and the event handlers that update it.

    Updates happen on the node's event loop; rendering may happen on another thread, which
    prometheus-client allows (each metric guards its children and values with locks).
    """

    def __init__(self, node: Node | None = None, max_label_values: int | None = None) -> None:
        import prometheus_client

        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runtime = _RuntimeCollector(node)
        self._render_lock: Any = None  # a trio.Lock, made on the first scrape
        self._folding: list[Any] | None = None
        self.label_overflow = Counter(
            "legion_metrics_label_overflow",
            f"Events counted under the label value {OVERFLOW!r} because the label already had "
            "its maximum number of distinct values, by label.",
            ["label"],
            registry=r,
        )
        limit = MAX_LABEL_VALUES if max_label_values is None else max_label_values
        self.agent, self.model, self.tool, self.supervisor, self.error = (
            LabelCap(self, label, limit) for label in CAPPED_LABELS
        )
        self.agent_starts = Counter(
            "legion_agent_starts", "Agents started, by agent class.", ["agent"], registry=r
        )
        self.agent_stops = Counter(
            "legion_agent_stops",
            "Agents stopped, by agent class and exit reason.",
            ["agent", "reason"],
            registry=r,
        )
        self.spawned = Counter("legion_processes_spawned", "OS processes spawned.", registry=r)
        self.mailbox_overflows = Counter(
            "legion_mailbox_overflows",
            "Processes killed for exceeding their mailbox bound.",
            registry=r,
        )
        self.exits = Counter(
            "legion_process_exits", "Processes ended, by exit reason.", ["reason"], registry=r
        )
        for reason in EXIT_REASONS:
            self.exits.labels(reason)
        self.restarts = Counter(
            "legion_supervisor_restarts",
            "Children restarted by supervisors, by supervisor class.",
            ["supervisor"],
            registry=r,
        )
        self.reloads = Counter("legion_reloads", "Code reloads.", ["outcome"], registry=r)
        for outcome in ("ok", "error"):
            self.reloads.labels(outcome)
        self.turns = Counter(
            "legion_agent_turns", "Agent turns, by agent and outcome.", ["agent", "outcome"],
            registry=r,
        )  # fmt: skip
        self.turn_duration = Histogram(
            "gen_ai_invoke_agent_duration_seconds",
            "Duration of an agent turn (GenAI invoke_agent).",
            ["gen_ai_agent_name", "error_type"],
            buckets=AGENT_BUCKETS,
            registry=r,
        )
        self.iterations = Counter(
            "legion_agent_iterations",
            "Loop steps (one model answer each), by agent and action.",
            ["agent", "action"],
            registry=r,
        )
        self.retries = Counter(
            "legion_agent_retries",
            "Failed steps fed back to the model for another try, by agent.",
            ["agent"],
            registry=r,
        )
        self.llm_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of a model request (GenAI client operation).",
            ["gen_ai_operation_name", "gen_ai_request_model", "error_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per model request, by token type (GenAI client token usage).",
            ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.llm_errors = Counter(
            "legion_llm_errors", "Model requests that failed, by model and error type.",
            ["gen_ai_request_model", "error_type"], registry=r,
        )  # fmt: skip
        self.cost = Counter(
            "legion_llm_cost_usd",
            "Cost of model requests in US dollars, when the price is known.",
            ["gen_ai_request_model"],
            registry=r,
        )
        self.eval_duration = Histogram(
            "legion_sandbox_evaluation_duration_seconds",
            "Duration of a sandbox evaluation, timed by the agent, by outcome.",
            ["outcome"],
            buckets=SANDBOX_BUCKETS,
            registry=r,
        )
        self.evaluations = Counter(
            "legion_sandbox_evaluations",
            "Sandbox evaluations, by agent and outcome (ok or the error kind).",
            ["agent", "outcome"],
            registry=r,
        )
        self.violations = Counter(
            "legion_sandbox_violations",
            "Evaluations stopped by a sandbox limit or guard, by kind.",
            ["kind"],
            registry=r,
        )
        for kind in VIOLATIONS:
            self.violations.labels(kind)
        self.tool_calls = Counter(
            "legion_tool_calls", "Tool calls from agent code, by tool and outcome.",
            ["tool", "outcome"], registry=r,
        )  # fmt: skip
        self.tool_duration = Histogram(
            "gen_ai_execute_tool_duration_seconds",
            "Duration of a tool call (GenAI execute_tool).",
            ["gen_ai_tool_name", "error_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.human_waits = Counter(
            "legion_human_waits", "Questions asked of a human, by agent.", ["agent"], registry=r
        )
        self.human_wait_duration = Histogram(
            "legion_human_wait_duration_seconds",
            "Time an agent waited for a human answer.",
            ["agent"],
            buckets=HUMAN_BUCKETS,
            registry=r,
        )
        self.runtime.metrics = self
        self.events = 0  # telemetry events handled: a plain int, read at scrape time
        self._malformed: set[t.Event] = set()  # event names already reported as malformed
        self.dropped = 0  # events not forwarded to an application that stopped reading
        self._children: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._handlers: dict[t.Event, Callable[[dict[str, Any], dict[str, Any]], None]] = {
            t.AGENT_STARTED: self._agent_started,
            t.AGENT_STOPPED: self._agent_stopped,
            (*t.MESSAGE, "stop"): self._turn,
            (*t.MESSAGE, "exception"): self._turn,
            (*t.ITERATION, "stop"): self._iteration,
            (*t.ITERATION, "exception"): self._iteration,
            (*t.LLM_REQUEST, "stop"): self._llm,
            (*t.LLM_REQUEST, "exception"): self._llm,
            (*t.SANDBOX_EVAL, "stop"): self._eval,
            (*t.SANDBOX_EVAL, "exception"): self._eval,
            (*t.TOOL_CALL, "stop"): self._tool,
            (*t.TOOL_CALL, "exception"): self._tool,
            t.HUMAN_INPUT_REQUIRED: self._human_asked,
            t.HUMAN_INPUT_RECEIVED: self._human_answered,
            t.PROCESS_SPAWNED: self._spawned,
            t.PROCESS_EXITED: self._exited,
            t.SUPERVISOR_RESTART: self._restart,
            t.RELOAD: self._reload,
        }

    def handle(
        self, event: t.Event, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        self.events += 1
        handler = self._handlers.get(event)
        if handler is None:
            return
        try:
            handler(measurements, metadata)
        except Exception as exc:  # a malformed event never takes the node down
            # One line per event name (bounded: only Legion's events have handlers), so a
            # process emitting odd values by the thousand cannot flood the node's log.
            if event not in self._malformed:
                self._malformed.add(event)
                log.warning(
                    "telemetry: an event %s with values of an unexpected type was not fully "
                    "counted (%s: %s); later ones are handled alike without a word",
                    event,
                    type(exc).__name__,
                    exc,
                )

    def exposition(self) -> _Exposition:
        """Everything a scrape shows; call it on the node's event loop."""
        return _Exposition(self.registry, list(self.runtime.collect()))

    def render(self) -> bytes:
        """The `/metrics` text, rendered here and now (on the event loop: tests, small nodes)."""
        return generate_latest(self.exposition())

    async def scrape(self) -> bytes:
        """The `/metrics` text, rendered on a worker thread so the event loop keeps routing.

        The runtime's figures are read on the loop first (the node's tables are not
        thread-safe); the registry is rendered on the thread, one scrape at a time (a burst
        of scrapes queues instead of taking a thread and a copy of the text each). A histogram
        updated during the render may show its new sum with its old count, as with any
        multithreaded prometheus-client user; the next scrape is exact again."""
        import trio

        if self._render_lock is None:
            self._render_lock = trio.Lock()
        async with self._render_lock:
            exposition = self.exposition()
            return await trio.to_thread.run_sync(
                generate_latest, exposition, abandon_on_cancel=True
            )

    def folded(self, overflow: Any) -> None:
        """A cap folded a value into `OVERFLOW` while an event's children were being chosen."""
        if self._folding is not None:
            self._folding.append(overflow)

    def _lookup(
        self, key: tuple[Any, ...], build: Callable[[dict[str, Any]], tuple[Any, ...]],
        meta: dict[str, Any],
    ) -> tuple[Any, ...]:  # fmt: skip
        """The labelled children an event updates, by the metadata that chose them.

        `labels(...)` costs more than the update itself, and an agent's events repeat the same
        few keys, so each handler looks its children up in one dict first. Keys are raw metadata
        values; the cache is dropped past 4,096 keys. An event whose labels were folded into
        `OVERFLOW` counts in `legion_metrics_label_overflow_total` on every use, cached or not.
        """
        entry = self._children.get(key)
        if entry is None:
            self._folding = []
            try:
                kids = build(meta)
            finally:
                folded, self._folding = tuple(self._folding), None
            if len(self._children) >= 4096:
                self._children.clear()
            self._children[key] = (kids, folded)
            return kids
        kids, folded = entry
        for overflow in folded:
            overflow.inc()
        return kids  # type: ignore[no-any-return]

    # -- handlers --------------------------------------------------------------------------------

    def _agent_started(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        self.agent_starts.labels(self.agent(meta.get("agent"))).inc()

    def _agent_stopped(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        reason = meta.get("reason")
        reason = reason if reason in EXIT_REASONS else "other"
        self.agent_stops.labels(self.agent(meta.get("agent")), reason).inc()

    def _turn(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        key = ("turn", meta.get("agent"), meta.get("outcome"), meta.get("kind"))
        count, duration = self._lookup(key, self._turn_kids, meta)
        count.inc()
        duration.observe(float(m.get("duration", 0.0)))

    def _turn_kids(self, meta: dict[str, Any]) -> tuple[Any, ...]:
        agent = self.agent(meta.get("agent"))
        outcome = "error" if "kind" in meta else meta.get("outcome", "ok")
        outcome = outcome if outcome in ("ok", "cancel", "error") else "error"
        error = self._error_type(meta) if outcome == "error" else ""
        return self.turns.labels(agent, outcome), self.turn_duration.labels(agent, error)

    def _error_type(self, meta: dict[str, Any]) -> str:
        return self.error(meta.get("kind") or meta.get("error_type"), "_OTHER")

    def _iteration(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        key = ("iteration", meta.get("agent"), meta.get("action"), meta.get("outcome"),
               meta.get("retried"))  # fmt: skip
        count, retry = self._lookup(key, self._iteration_kids, meta)
        count.inc()
        if retry:
            retry.inc()

    def _iteration_kids(self, meta: dict[str, Any]) -> tuple[Any, ...]:
        agent = self.agent(meta.get("agent"))
        action = meta.get("action")
        action = action if action in ACTIONS else "none" if action is None else "invalid"
        retried = meta.get("outcome") == "failure" and meta.get("retried")
        return self.iterations.labels(agent, action), retried and self.retries.labels(agent)

    def _llm(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        key = ("llm", meta.get("model"), meta.get("kind"))
        duration, errors, tokens_in, tokens_out, cost = self._lookup(key, self._llm_kids, meta)
        duration.observe(float(m.get("duration", 0.0)))
        if errors is not None:
            errors.inc()
            return
        if "input_tokens" in m:
            tokens_in.observe(m["input_tokens"])
        if "output_tokens" in m:
            tokens_out.observe(m["output_tokens"])
        spent = m.get("cost_usd")
        if spent:
            cost.inc(spent)

    def _llm_kids(self, meta: dict[str, Any]) -> tuple[Any, ...]:
        model = self.model(meta.get("model"))
        if "kind" in meta:
            error = self._error_type(meta)
            return (self.llm_duration.labels("chat", model, error),
                    self.llm_errors.labels(model, error), None, None, None)  # fmt: skip
        return (self.llm_duration.labels("chat", model, ""), None,
                self.tokens.labels("chat", model, "input"),
                self.tokens.labels("chat", model, "output"), self.cost.labels(model))  # fmt: skip

    def _eval(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        key = ("eval", meta.get("agent"), meta.get("outcome"), "kind" in meta)
        duration, count, violation = self._lookup(key, self._eval_kids, meta)
        duration.observe(float(m.get("duration", 0.0)))
        count.inc()
        if violation is not None:
            violation.inc()

    def _eval_kids(self, meta: dict[str, Any]) -> tuple[Any, ...]:
        outcome = meta.get("outcome", "ok") if "kind" not in meta else "crashed"
        outcome = outcome if outcome in SANDBOX_OUTCOMES else "crashed"
        return (
            self.eval_duration.labels(outcome),
            self.evaluations.labels(self.agent(meta.get("agent")), outcome),
            self.violations.labels(outcome) if outcome in VIOLATIONS else None,
        )

    def _tool(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        key = ("tool", meta.get("tool"), meta.get("kind"))
        count, duration = self._lookup(key, self._tool_kids, meta)
        count.inc()
        duration.observe(float(m.get("duration", 0.0)))

    def _tool_kids(self, meta: dict[str, Any]) -> tuple[Any, ...]:
        tool = self.tool(meta.get("tool"))
        error = self._error_type(meta) if "kind" in meta else ""
        return (self.tool_calls.labels(tool, "error" if error else "ok"),
                self.tool_duration.labels(tool, error))  # fmt: skip

    def _human_asked(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        self.human_waits.labels(self.agent(meta.get("agent"))).inc()

    def _human_answered(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        agent = self.agent(meta.get("agent"))
        self.human_wait_duration.labels(agent).observe(float(m.get("duration", 0.0)))

    def _spawned(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        self.spawned.inc()

    def _exited(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        reason = meta.get("reason")
        self.exits.labels(reason if reason in EXIT_REASONS else "other").inc()

    def _restart(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        self.restarts.labels(self.supervisor(meta.get("supervisor"))).inc()

    def _reload(self, m: dict[str, Any], meta: dict[str, Any]) -> None:
        self.reloads.labels("error" if meta.get("outcome") == "error" else "ok").inc()


# -- /metrics ------------------------------------------------------------------------------------


async def serve_metrics(
    scrape: Callable[[], Awaitable[bytes]],
    host: str,
    port: int,
    *,
    task_status: Any,
) -> None:
    """Serve `GET /metrics` on `host:port` with trio; `task_status.started(port)`.

    `scrape` renders the text (`NodeMetrics.scrape`: on a worker thread), so a slow render
    delays only the scraper, never the node's other tasks."""
    import trio

    async def handle(stream: trio.SocketStream) -> None:
        try:
            data = b""
            with trio.move_on_after(10):
                while b"\r\n\r\n" not in data and len(data) < 16384:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    data += chunk
            line = data.split(b"\r\n", 1)[0].split()
            if (
                len(line) >= 2
                and line[0] in (b"GET", b"HEAD")
                and line[1].split(b"?")[0]
                in (
                    b"/metrics",
                    b"/",
                )
            ):
                body = await scrape()
                head = (
                    f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                await stream.send_all(head + (body if line[0] == b"GET" else b""))
            else:
                body = b"not found: try /metrics\n"
                head = (
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                await stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    bound: int = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(bound)


def names(metrics: NodeMetrics) -> Iterable[str]:
    """Every metric family name a scrape exposes (for docs and tests)."""
    return sorted({m.name for m in metrics.exposition().collect()})
