"""Agents: `legion.Agent` subclasses, each running as its own server process.

An agent process holds its conversation (messages, bindings, usage) and its tool instances.
Turns (`legion.call` / `legion.cast`) are queued and run one at a time by a task beside the
server loop, so the server keeps answering while a turn runs: `get_messages` does not wait
behind a turn, and `legion.respond` can answer a `HumanTool` question the turn is waiting on.

A turn's reply travels as an envelope that `legion.call` unwraps in the caller: the value (an
instance when `output_schema` is a Python type), or `AgentCancelled` with the reason.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import math
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar

from . import config as _config
from . import telemetry, vault
from .errors import LegionError
from .loop import Conversation, TurnSettings, run_turn
from .prompt import ACTIONS, action_schema
from .prompt import system_prompt as build_prompt
from .supervisor import api
from .supervisor.errors import NoProc
from .supervisor.server import AGENT_QUERY, NoReply, Server
from .supervisor.terms import CallProgress, From, Pid
from .tool import check_names, instantiate, public_functions, short_name

__all__ = [
    "Agent",
    "AgentCancelled",
    "TooManySubAgents",
    "aexecute",
    "aparallel",
    "apipeline",
    "athen",
    "execute",
    "get_messages",
    "get_usage",
    "parallel",
    "pending_questions",
    "pipeline",
    "respond",
    "then",
]

TURN_KEY = "$legion.turn"
CONTROL = AGENT_QUERY  # the runtime refuses these for servers that are not agents


class AgentCancelled(LegionError):
    """A turn ended without an answer; the agent keeps the history of the cancelled turn.

    `reason` is "reached_max_iterations", "reached_max_retries" or "provider_error" (the
    provider refused in a way asking again cannot fix: bad key, unknown model or provider, a bad
    request). `error` is the last error the turn saw (the provider's message, the code's
    exception...), or None if it saw none; its first line is in the message too."""

    def __init__(self, reason: str, error: str | None = None) -> None:
        text = f"the agent cancelled the turn: {reason}"
        if error:
            first = error.strip().splitlines()[0] if error.strip() else error
            text += f" (last error: {first[:500]}{'...' if len(first) > 500 else ''})"
        super().__init__(text)
        self.reason = reason
        self.error = error

    def __reduce__(self) -> Any:
        return (type(self), (self.reason, self.error))


class TooManySubAgents(LegionError):
    """An agent tried to start more sub-agents than `max_sub_agents` (at once) or
    `max_sub_agents_per_turn` allow; raised in the agent's code, so the model sees it."""


class Agent(Server):
    """Base class of an agent. The class docstring is its role (required).

    Class attributes (all optional): `tools` (Tool classes or modules), `output_schema` (a JSON
    schema dict or a Python type; default: a string), `config` (overrides of the global config),
    `action_types` (the allowed actions), `system_prompt` (replaces the whole prompt). Override
    `tool_config(tool)` to give a tool its settings (`self.config` in the tool).
    """

    __legion_agent__: ClassVar[bool] = True
    tools: ClassVar[Sequence[Any]] = ()
    output_schema: ClassVar[Any] = None
    config: ClassVar[dict[str, Any]] = {}
    action_types: ClassVar[Sequence[str]] = tuple(ACTIONS)
    system_prompt: ClassVar[str | None] = None
    process_groups: ClassVar[Sequence[Any]] = ()
    """Groups (`legion.pg`) the agent joins when it starts, so a restarted agent joins again
    and a dead one leaves: the pool pattern."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        doc = cls.__dict__.get("__doc__")
        if not isinstance(doc, str) or not doc.strip():
            raise TypeError(
                f"agent {cls.__qualname__} must define a docstring: it is the agent's role in "
                'the system prompt (class MyAgent(legion.Agent): """What this agent does.""")'
            )
        _check_output_schema(cls)
        bad = [a for a in cls.action_types if a not in ACTIONS]
        if bad or not cls.action_types:
            raise TypeError(
                f"agent {cls.__qualname__}: action_types must be a non-empty subset of "
                f"{list(ACTIONS)}, got {list(cls.action_types)}"
            )

    def tool_config(self, tool: Any) -> dict[str, Any]:
        """The settings for `tool` (its `self.config`). Default: {}."""
        return {}

    @classmethod
    def child_spec(
        cls,
        task: Any = None,
        *,
        id: Any = None,
        name: str | None = None,
        restart: str = "transient",
        shutdown: float | str | None = None,
        **config: Any,
    ) -> Any:
        """A `legion.ChildSpec` that starts this agent under a supervisor (restart "transient",
        as Legion's): the config is resolved and validated now, in the caller, and every
        (re)start gets the same config, Vault snapshot and first `task`. With `name`, callers
        find the restarted agent by name (`legion.call(name, msg)` from this process waits
        without limit; elsewhere pass `timeout=None`)."""
        from .supervisor.childspec import child_spec

        arg = _start_arg(cls, task, config)
        extra: dict[str, Any] = {} if shutdown is None else {"shutdown": shutdown}
        return child_spec(cls, arg, id=id, restart=restart, name=name, **extra)

    @classmethod
    def role(cls) -> str:
        """The docstring, as it appears in the prompt."""
        import inspect

        return inspect.cleandoc(cls.__doc__ or "")

    # -- the server ------------------------------------------------------------------------------

    async def init(self, arg: Any) -> Any:
        import trio

        from .supervisor import process

        global _CURRENT
        _CURRENT = self
        inherit = arg["inherit"]
        _config.install_global(inherit.get("global", {}))
        _INHERIT.update(inherit)
        vault.install(arg.get("vault", {}))
        self.run_id: str = uuid.uuid4().hex
        self.parent_run_id: str | None = arg.get("parent_run_id")
        telemetry.set_context(
            agent=type(self).__qualname__, run_id=self.run_id, parent_run_id=self.parent_run_id
        )
        self.owner: Pid | None = arg.get("owner")
        self.settings_config: dict[str, Any] = arg["config"]
        self.children: list[Pid] = []
        self.starting_sub_agents = 0  # spawns under way, counted against max_sub_agents
        self.turn_sub_agents = 0  # started during the current turn
        self.questions: dict[str, Any] = {}
        cls = type(self)
        check_names(cls.tools)
        self.tool_instances = [instantiate(t, self.tool_config(t) or {}) for t in cls.tools]
        self.tool_table = {
            short_name(t): types.SimpleNamespace(
                **{
                    name: _timed(short_name(t), name, _off_loop(fn))
                    for name, fn in public_functions(t).items()
                }
            )
            for t in self.tool_instances
        }
        cfg = self.settings_config
        prompt = cls.system_prompt
        if prompt is None:
            from .sandbox.guard import allowlist

            prompt = build_prompt(
                cls.role(),
                self.tool_instances,
                action_types=cls.action_types,
                binding_scope=cfg["binding_scope"],
                allowed_modules=allowlist(cfg.get("sandbox_modules", ())),
            )
        self.conversation = Conversation([{"role": "system", "content": prompt}])
        self.schema = action_schema(cls.action_types, cls.output_schema)
        self.observer: Pid | None = arg.get("observer")
        self.turn_settings = TurnSettings(
            config=cfg,
            action_types=cls.action_types,
            schema=self.schema,
            output_schema=cls.output_schema,
            validate_complete=cls.output_schema is not None,
            ask=self._ask,
            evaluate=self._evaluate,
            agent_name=cls.__qualname__,
            on_step=self._observe if self.observer is not None else None,
        )
        self._send, self._inbox = trio.open_memory_channel[Any](math.inf)  # bounded: _queue
        worker = process.current()
        assert worker is not None
        self._mailbox = worker.mailbox
        trio.lowlevel.spawn_system_task(
            self._turns, name=f"{cls.__qualname__} turns", context=contextvars.copy_context()
        )
        if cls.process_groups:
            from .supervisor import pg

            for group in cls.process_groups:
                await pg.ajoin(group, api.self())
        if arg.get("task") is not None:
            self._send.send_nowait((arg["task"], None, 0))
        telemetry.emit(telemetry.AGENT_STARTED, {"system_time": time.time()})
        return None

    async def _turns(self) -> None:
        from .supervisor import process
        from .supervisor.terms import crash_from_exception

        try:
            async for message, from_, size in self._inbox:
                self._mailbox.release(size)
                if type(message) is _Reload:  # between two turns, never during one
                    outcome = self._reload(message.modules)
                    if from_ is not None:
                        api.reply(from_, outcome)
                    continue
                before = len(self.conversation.messages)
                self.turn_sub_agents = 0
                with telemetry.span(telemetry.MESSAGE, {"message": message}) as info:
                    status, value, error = await run_turn(
                        self.conversation, message, self.turn_settings
                    )
                    info["outcome"] = status
                    info["iterations"] = sum(
                        1 for m in self.conversation.messages[before:] if m["role"] == "assistant"
                    )
                    if status == "cancel":
                        info["reason"] = value
                        info["error"] = error
                if self.observer is not None:
                    done = {"type": "legion.turn_done", "status": status, "value": value}
                    self._notify({**done, "error": error})
                if from_ is not None:
                    api.reply(from_, self._envelope(status, value, error))
        except BaseException as exc:
            worker = process.current()
            assert worker is not None
            process.finish(worker, crash_from_exception(exc))

    def _observe(self, event: dict[str, Any]) -> None:
        """Tell the observer (`legion run`) about a step as it happens."""
        if "object" in event:
            obj = event["object"]
            self._notify({"type": "legion.step", "iteration": event["iteration"], "object": obj})
        else:
            ev = event["evaluation"]
            self._notify(
                {
                    "type": "legion.eval",
                    "iteration": event["iteration"],
                    "ok": ev.ok,
                    "value": ev.value_repr,
                    "stdout": ev.stdout,
                    "error": ev.error,
                }
            )

    def _notify(self, message: dict[str, Any]) -> None:
        assert self.observer is not None
        try:
            api.send(self.observer, message)
        except TypeError:
            api.send(self.observer, {**message, "value": repr(message.get("value"))})

    def _envelope(self, status: str, value: Any, error: str | None = None) -> dict[str, Any]:
        schema = type(self).output_schema
        path = None
        if status == "ok" and value is not None and isinstance(schema, type):
            path = f"{schema.__module__}:{schema.__qualname__}"
        return {TURN_KEY: [status, value, path, error]}

    async def _ask(self, messages: list[dict[str, Any]], meta: dict[str, Any]) -> Any:
        cfg = self.settings_config
        model = cfg["model"] if isinstance(cfg["model"], str) else type(cfg["model"]).__name__
        with telemetry.span(
            telemetry.LLM_REQUEST,
            {"model": model, "message_count": len(messages), "iteration": meta.get("iteration")},
        ) as info:
            obj, usage = await self._generate(messages, meta)
            info.measurements["input_tokens"] = usage.prompt_tokens
            info.measurements["output_tokens"] = usage.completion_tokens
            if usage.cost:
                info.measurements["cost_usd"] = usage.cost
            info["object"] = obj
        return obj, usage

    async def _generate(self, messages: list[dict[str, Any]], meta: dict[str, Any]) -> Any:
        from . import llm

        cfg = self.settings_config
        return await llm.generate_object(
            cfg["model"],
            messages,
            self.schema,
            timeout=cfg["llm_timeout"],
            test_model=_INHERIT.get("test_model"),
            block_real=bool(_INHERIT.get("block_real")),
            options=cfg["llm_options"],
            meta={
                "agent": type(self).__qualname__,
                "run_id": self.run_id,
                "parent_run_id": self.parent_run_id,
                "pid": api.self(),
                **meta,
            },
        )

    async def _evaluate(self, code: str, bindings: Any) -> Any:
        from .sandbox import aevaluate

        timeout = self.settings_config["sandbox_timeout"]
        with telemetry.span(telemetry.SANDBOX_EVAL, {"code": code}) as info:
            ev = await aevaluate(
                code,
                tools=self.tool_table,
                bindings=bindings,
                timeout=1e7 if math.isinf(timeout) else float(timeout),
                modules=self.settings_config.get("sandbox_modules", ()),
            )
            info["outcome"] = "ok" if ev.ok else (ev.error_kind or "exception")
            if not ev.ok:
                info["error"] = ev.error
        return ev

    def handle_call(self, request: Any, from_: From) -> Any:
        if _is_control(request):
            if request[1] == "reload":
                return self._control("reload", [request[2], from_])
            return self._control(request[1], request[2:])
        self._queue(request, from_)
        api.send(from_.pid, CallProgress(from_.ref))  # a turn takes long: lift the default timeout
        return NoReply()

    def handle_cast(self, message: Any) -> Any:
        if _is_control(message):
            self._control(message[1], message[2:])
            return None
        self._queue(message, None)
        return None

    def _queue(self, message: Any, from_: From | None) -> None:
        """Queue a turn. Its request counts against `max_mailbox_bytes` until the turn starts
        (the size its frame had), with the messages still in the mailbox: an agent flooded
        while a turn runs ends with reason ("mailbox_full", limit) instead of growing without
        bound, as the node kills a process for a backlog the node holds (mailbox.py)."""
        size = self._mailbox.last_size  # the message the server loop just took
        self._send.send_nowait((message, from_, size))
        self._mailbox.hold(size)

    def _reload(self, modules: Sequence[str]) -> Any:
        """Load the changed modules this process imported (`legion.reload`), between two turns.

        Classes and functions are patched in place, so the agent's tool instances run the new
        tool code; the tool table and the system prompt are rebuilt from the tools as they are
        now (new signatures and docstrings), tools new in the new code are created, and the
        conversation, bindings and kept tool instances stay. `code_change(old_vsn, None)` runs
        when the agent's own module changed. Replies `["ok", modules loaded here]` or
        `["error", reason]` with everything put back.
        """
        from .supervisor import codeload

        old_cls = type(self)
        old_vsn = old_cls.vsn  # read now: a class patched in place already holds the new vsn
        try:
            loaded = codeload.load(modules)
        except codeload.LoadError as exc:
            return ["error", f"cannot load {exc}"]
        if not loaded.modules:
            return ["ok", []]
        try:
            new_cls = codeload.current(old_cls)
            tools = [codeload.current(t) if isinstance(t, type) else t for t in new_cls.tools]
            check_names(tools)
            by_name = {short_name(t): t for t in self.tool_instances}
            instances = []
            for tool in tools:
                kept = by_name.get(short_name(tool))
                if kept is None or isinstance(kept, types.ModuleType):
                    kept = instantiate(tool, self.tool_config(tool) or {})
                elif isinstance(tool, type) and not isinstance(kept, tool):
                    kept = _switch_class(kept, tool, self.tool_config(tool) or {})
                instances.append(kept)
            self.__class__ = new_cls
            prompt = new_cls.system_prompt
            if prompt is None:
                from .sandbox.guard import allowlist

                prompt = build_prompt(
                    new_cls.role(),
                    instances,
                    action_types=new_cls.action_types,
                    binding_scope=self.settings_config["binding_scope"],
                    allowed_modules=allowlist(self.settings_config.get("sandbox_modules", ())),
                )
            if old_cls.__module__ in loaded.modules:
                self.code_change(old_vsn, None)
        except BaseException as exc:
            self.__class__ = old_cls
            loaded.undo()
            return ["error", f"{type(exc).__name__}: {exc}"]
        self.tool_instances = instances
        self.tool_table = {
            short_name(t): types.SimpleNamespace(
                **{
                    name: _timed(short_name(t), name, _off_loop(fn))
                    for name, fn in public_functions(t).items()
                }
            )
            for t in instances
        }
        self.conversation.messages[0] = {"role": "system", "content": prompt}
        return ["ok", loaded.modules]

    def _control(self, op: str, args: Sequence[Any]) -> Any:
        if op == "reload":
            self._queue(_Reload(list(args[0])), args[1] if len(args) > 1 else None)
            return NoReply()
        if op == "messages":
            return self.conversation.messages
        if op == "usage":
            return [
                {
                    "model": u.model,
                    "prompt_tokens": u.prompt_tokens,
                    "completion_tokens": u.completion_tokens,
                    "cost": u.cost,
                    "duration": u.duration,
                }
                for u in self.conversation.usage
            ]
        if op == "info":
            return {"run_id": self.run_id, "parent_run_id": self.parent_run_id}
        if op == "pending":
            return [q["question"] for q in self.questions.values()]
        if op == "respond":
            question_id, answer = args
            if question_id is None and self.questions:
                question_id = next(iter(self.questions))
            pending = self.questions.pop(question_id, None) if question_id else None
            if pending is None:
                return False
            pending["answer"] = answer
            pending["event"].set()
            return True
        raise ValueError(f"unknown agent request {op!r}")

    async def terminate(self, reason: Any) -> Any:
        """Stop the sub-agents (all at once, each with its own timeout), then the sandbox."""
        import trio

        async def stop(pid: Pid) -> None:
            try:
                await api.aunlink(pid)
                await api.astop(pid, "shutdown")
            except LegionError:
                pass

        async with trio.open_nursery() as nursery:
            for pid in list(self.children):
                nursery.start_soon(stop, pid)
        runner = sys.modules.get("legion.sandbox.runner")
        if runner is not None:  # a zygote of our own (node sandbox off) stops now, not at EOF;
            runner.SPARES.clear()  # a shared one only loses this process's handle
            runner.ZYGOTE.stop()
        return None


def _off_loop(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A synchronous tool runs in a worker thread (with this context: the Vault, the current
    action), so a slow tool does not stop the agent from answering `get_messages` or
    `respond`; async tools run on the loop as they are."""
    import functools
    import inspect

    if inspect.iscoroutinefunction(fn):
        return fn

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        import trio

        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    return run


def _timed(tool: str, function: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A tool function that emits `("legion", "tool", "call", ...)` around each call."""
    import functools

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        with telemetry.span(telemetry.TOOL_CALL, {"tool": tool, "function": function}) as info:
            result = await fn(*args, **kwargs)
            info["outcome"] = "ok"
        return result

    return call


_CURRENT: Agent | None = None
_INHERIT: dict[str, Any] = {}


def _check_output_schema(cls: type[Agent]) -> None:
    """A schema the model (and the local validation) could not use fails at class definition."""
    schema = cls.__dict__.get("output_schema")
    if schema is None:
        return
    if isinstance(schema, dict):
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise TypeError(
                f"agent {cls.__qualname__}: output_schema is not a valid JSON schema: {exc.message}"
            ) from None
        return
    import msgspec

    try:
        msgspec.json.schema(schema)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"agent {cls.__qualname__}: output_schema must be a JSON-schema dict or a type "
            f"msgspec can describe (Struct, dataclass, TypedDict...): {exc}"
        ) from None


def _switch_class(tool: Any, cls: type, config: dict[str, Any]) -> Any:
    """A kept tool instance on a class that was replaced rather than patched in place: it takes
    the new class and keeps its state, or, if the layout changed, a fresh instance replaces it."""
    try:
        tool.__class__ = cls
    except TypeError:
        return instantiate(cls, config)
    return tool


class _Reload:
    """A reload request queued behind the turns (`legion.reload`)."""

    def __init__(self, modules: list[str]) -> None:
        self.modules = modules


def current() -> Agent | None:
    """The agent running in this process (tools use it), or None outside agent processes."""
    return _CURRENT


def _is_control(request: Any) -> bool:
    return (
        type(request) is list
        and len(request) >= 2
        and request[0] == CONTROL
        and isinstance(request[1], str)
    )


def is_agent(target: Any) -> bool:
    return isinstance(target, type) and getattr(target, "__legion_agent__", False) is True


def _check_agent(agent: Any) -> type[Agent]:
    if not is_agent(agent) or agent is Agent:
        raise TypeError(f"expected a legion.Agent subclass, got {agent!r}")
    result: type[Agent] = agent
    return result


# -- starting agents and running turns (any process) -------------------------------------------


def _start_arg(agent: type[Agent], task: Any, options: dict[str, Any]) -> dict[str, Any]:
    from . import testing

    options = dict(options)
    observer = options.pop("observer", None)
    test_model = testing.active_model()
    model = options.get("model")
    if model is not None and hasattr(model, "__legion_test_model__"):
        test_model = model.serve()
        options["model"] = model.name
    cfg = _config.resolve(agent.config, options)
    parent = current()
    return {
        "config": cfg,
        "task": task,
        "vault": vault.snapshot(),
        "owner": api.self(),
        "parent_run_id": parent.run_id if parent is not None else None,
        "observer": observer,
        "inherit": {
            "global": _config.global_config(),
            "test_model": test_model,
            "block_real": testing.blocking(),
        },
    }


def check_sub_agent_room(count: int = 1) -> None:
    """Raise `TooManySubAgents` if the agent running here may not start `count` more
    sub-agents now (`max_sub_agents` at once, `max_sub_agents_per_turn` per turn). Outside an
    agent process there is no limit."""
    agent = current()
    if agent is None:
        return
    cfg = agent.settings_config
    running = len(agent.children) + agent.starting_sub_agents
    if running + count > cfg["max_sub_agents"]:
        raise TooManySubAgents(
            f"cannot start {count} more sub-agent(s): {running} already running, and this agent "
            f"runs at most max_sub_agents={cfg['max_sub_agents']} at once. Run fewer at a time "
            "(wait for results, reuse a start_link handle), or raise max_sub_agents in the "
            "agent's config"
        )
    if agent.turn_sub_agents + count > cfg["max_sub_agents_per_turn"]:
        raise TooManySubAgents(
            f"cannot start {count} more sub-agent(s): this turn already started "
            f"{agent.turn_sub_agents}, and a turn starts at most max_sub_agents_per_turn="
            f"{cfg['max_sub_agents_per_turn']}. Do the rest in fewer sub-agent tasks, or raise "
            "max_sub_agents_per_turn in the agent's config"
        )


@contextlib.contextmanager
def _sub_agent_slot() -> Iterator[None]:
    """Hold one of the agent's sub-agent places while a spawn is under way."""
    agent = current()
    if agent is None:
        yield
        return
    check_sub_agent_room()
    agent.starting_sub_agents += 1
    agent.turn_sub_agents += 1
    try:
        yield
    finally:
        agent.starting_sub_agents -= 1


def _remember(pid: Pid | None, name: str | None) -> None:
    agent = current()
    if pid is not None and agent is not None:
        agent.children.append(pid)


def start_agent(
    agent: Any,
    task: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    link: bool = True,
    **options: Any,
) -> Pid:
    """Start an agent process (the work behind `legion.start_link(agent, ...)`)."""
    cls = _check_agent(agent)
    arg = _start_arg(cls, task, options)
    with _sub_agent_slot():
        pid: Pid = api._endpoint().spawn(cls, arg, link=link, name=name, sync=True, timeout=timeout)
        _remember(pid, name)
    return pid


async def astart_agent(
    agent: Any,
    task: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    link: bool = True,
    **options: Any,
) -> Pid:
    cls = _check_agent(agent)
    arg = _start_arg(cls, task, options)
    with _sub_agent_slot():
        pid: Pid = await api._endpoint().aspawn(
            cls, arg, link=link, name=name, sync=True, timeout=timeout
        )
        _remember(pid, name)
    return pid


def unwrap_turn(reply: dict[str, Any]) -> Any:
    """The caller's side of a turn reply: the value, or `AgentCancelled`."""
    status, value, path, error = reply[TURN_KEY]
    if status == "cancel":
        raise AgentCancelled(value, error)
    if path is not None:
        import msgspec

        module, _, qualname = path.partition(":")
        if module in ("__main__", "__mp_main__"):  # the script is __mp_main__ in workers
            module = "__main__" if "__main__" in sys.modules else module
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
        return msgspec.convert(value, target)
    return value


def _forget(pid: Pid) -> None:
    agent = current()
    if agent is not None and pid in agent.children:
        agent.children.remove(pid)


def _dispose(pid: Pid) -> None:
    try:
        api.unlink(pid)
        api.stop(pid)
    except NoProc:
        pass
    finally:
        _forget(pid)


async def _shielded_dispose(pid: Pid) -> None:
    """Stop a one-shot agent even when the caller was cancelled (a `parallel` timeout): the
    stop runs shielded, bounded; an agent that does not stop in time is killed."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        with trio.CancelScope(shield=True):
            with trio.move_on_after(10) as scope:
                await _adispose(pid)
            if scope.cancelled_caught:
                api.exit(pid, "kill")
    else:
        import asyncio

        await asyncio.shield(_adispose(pid))


async def _adispose(pid: Pid) -> None:
    try:
        await api.aunlink(pid)
        await api.astop(pid)
    except NoProc:
        pass
    finally:
        _forget(pid)


def execute(agent: Any, task: Any, *, timeout: float | None = None, **config: Any) -> Any:
    """Start `agent`, run one turn on `task`, stop the agent, and return the turn's value.

    Raises `AgentCancelled` if the turn was cancelled. `config` overrides the agent's config
    for this run. Waits without limit unless `timeout` is given (`CallTimeout` then).
    """
    pid = start_agent(agent, **config)
    try:
        return api.call(pid, task, timeout)
    finally:
        _dispose(pid)


async def aexecute(agent: Any, task: Any, *, timeout: float | None = None, **config: Any) -> Any:
    """The awaitable twin of `execute` (trio or asyncio)."""
    pid = await astart_agent(agent, **config)
    try:
        return await api.acall(pid, task, timeout)
    finally:
        await _shielded_dispose(pid)


def get_messages(dest: Pid | str, timeout: float | None = 5.0) -> list[dict[str, Any]]:
    """The agent's conversation: `[{"role": ..., "content": ...}, ...]`, system prompt first.

    Answered at once, even while a turn runs (the history then includes its steps so far).
    """
    result: list[dict[str, Any]] = _query(dest, [CONTROL, "messages"], timeout, "get_messages")
    return result


def get_usage(dest: Pid | str, timeout: float | None = 5.0) -> list[dict[str, Any]]:
    """One record per LLM request: model, prompt and completion tokens, cost (USD or None)."""
    result: list[dict[str, Any]] = _query(dest, [CONTROL, "usage"], timeout, "get_usage")
    return result


def pending_questions(dest: Pid | str, timeout: float | None = 5.0) -> list[dict[str, Any]]:
    """The agent's unanswered `HumanTool.ask` questions (each with pid, run id and id)."""
    result: list[dict[str, Any]] = _query(dest, [CONTROL, "pending"], timeout, "pending_questions")
    return result


def respond(
    dest: Pid | str, answer: Any, question_id: str | None = None, timeout: float | None = 5.0
) -> bool:
    """Answer the agent's pending human question (the oldest one, unless `question_id`).

    Returns False if no question was pending.
    """
    result: bool = _query(dest, [CONTROL, "respond", question_id, answer], timeout, "respond")
    return result


def _query(dest: Pid | str, request: list[Any], timeout: float | None, what: str) -> Any:
    """Ask the agent `dest`. A server that is not an agent answers `NOT_AN_AGENT` (its runtime
    refuses the query before `handle_call`) and a function process may echo the query back:
    either is a TypeError here, since no agent answers with those."""
    from .supervisor.server import NOT_AN_AGENT

    result = api.call(dest, request, timeout)
    if result in (NOT_AN_AGENT, request):
        raise TypeError(f"legion.{what}: {dest!r} is not an agent (a legion.Agent process)")
    return result


def parallel(tasks: Iterable[tuple[Any, Any]], timeout: float | None = None) -> list[Any]:
    """Run `execute(agent, task)` for every pair at once; the values in input order.

    If any turn is cancelled, raises the first `AgentCancelled` in list order (after all
    finished). `timeout` bounds the whole run (`CallTimeout`).
    """
    from .supervisor import wire
    from .supervisor.endpoint import _deadline

    pairs = list(tasks)
    pids: list[Pid] = []
    ep = api._endpoint()
    try:
        for agent, _ in pairs:
            pids.append(start_agent(agent))
        refs = [ep._start_call(pid, task) for pid, (_, task) in zip(pids, pairs, strict=True)]
        deadline = _deadline(timeout)
        replies: list[Any] = []
        try:
            for pid, ref in zip(pids, refs, strict=True):
                ok = ep._wait(ep._has(ref), deadline)
                replies.append(ep._finish_call(ref, ok, pid, timeout))
        finally:
            for ref in refs[len(replies) :]:
                with ep._lock:
                    if ref in ep._calls:
                        ep._calls.discard(ref)
                        ep._results.pop(ref, None)
                        ep.send_frame(wire.CancelCall(ref))
    finally:
        for pid in pids:
            _dispose(pid)
    errors: list[BaseException] = []
    values: list[Any] = []
    for reply in replies:
        try:
            values.append(api.unwrap_reply(reply))
        except AgentCancelled as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    return values


async def aparallel(tasks: Iterable[tuple[Any, Any]], timeout: float | None = None) -> list[Any]:
    """The trio twin of `parallel` (used by `AgentTool.parallel` inside an agent)."""
    import trio

    pairs = list(tasks)
    results: list[Any] = [None] * len(pairs)

    async def one(i: int, agent: Any, task: Any) -> None:
        try:
            results[i] = ("ok", await aexecute(agent, task))
        except AgentCancelled as exc:
            results[i] = ("cancel", exc)

    with trio.fail_after(math.inf if timeout is None else timeout):
        async with trio.open_nursery() as nursery:
            for i, (agent, task) in enumerate(pairs):
                nursery.start_soon(one, i, agent, task)
    for status, value in results:
        if status == "cancel":
            raise value
    return [value for _, value in results]


def _pipeline_tasks(steps: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    checked = []
    for agent, task in steps:
        if not isinstance(task, str) and not callable(task):
            raise TypeError(
                f"expected task to be a str or a function of one argument, got: {task!r}"
            )
        checked.append((agent, task))
    return checked


def pipeline(steps: Iterable[tuple[Any, str | Callable[[Any], Any]]]) -> Any:
    """Run steps in order; a function step gets the previous value (None for the first).

    Stops at the first cancel (raises `AgentCancelled`); returns the last value.
    """
    previous: Any = None
    for agent, task in _pipeline_tasks(steps):
        message = task(previous) if callable(task) else task
        previous = execute(agent, message)
    return previous


async def apipeline(steps: Iterable[tuple[Any, str | Callable[[Any], Any]]]) -> Any:
    previous: Any = None
    for agent, task in _pipeline_tasks(steps):
        message = task(previous) if callable(task) else task
        previous = await aexecute(agent, message)
    return previous


def then(previous: Any, agent: Any, make_task: Callable[[Any], Any], **config: Any) -> Any:
    """Legion's `then`: run `agent` on `make_task(previous)` and return its value.

    A cancelled previous step (an `AgentCancelled`, e.g. caught from `execute`) passes through
    unchanged, returned without calling `make_task` or any model.
    """
    if isinstance(previous, AgentCancelled):
        return previous
    return execute(agent, make_task(previous), **config)


async def athen(previous: Any, agent: Any, make_task: Callable[[Any], Any], **config: Any) -> Any:
    if isinstance(previous, AgentCancelled):
        return previous
    return await aexecute(agent, make_task(previous), **config)
