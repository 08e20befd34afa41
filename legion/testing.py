"""Offline models for tests: script the LLM from the test process, inspect every request.

The agent runs in its own OS process; the model lives here, in the application. While a model is
active (``with model:``), every agent started from this process (and their sub-agents) sends its
LLM requests to it through the runtime: a background thread of the application receives them,
records a :class:`Request`, computes the answer and replies. So a test writes::

    from legion import testing

    with testing.ScriptedModel([
        testing.eval_and_continue("x = 10"),
        testing.eval_and_complete("x * 2"),
    ]) as model:
        assert legion.execute(MathAgent, "double ten") == 20
    assert "Available variables: `x`" in model.requests[1].messages[-1]["content"]

A step is an action dict (or one of the helpers below); `llm_error(...)` (a provider error:
transient ones are fed back to the agent as a retry after a backoff, `retryable=False` ones end
the turn with `AgentCancelled("provider_error")`); an exception instance (sorted as a real
provider error would be, by `legion.llm.classify`); `raw(text)` (a reply's raw content, parsed
in the agent as a provider's is); or a function of the :class:`Request` returning any of these.
A script that runs out, a function that raises, or a step that cannot be sent to the agent
fails the agent loudly (the test is wrong), never leaving it waiting.

Real LLM calls are blocked while pytest is imported in the starting process (or after
`block_real_models()`): the agent then crashes with `RealModelBlocked` instead of calling out.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FunctionModel",
    "Request",
    "ScriptedModel",
    "TestModel",
    "active_model",
    "allow_real_models",
    "block_real_models",
    "blocking",
    "done",
    "eval_and_complete",
    "eval_and_continue",
    "llm_error",
    "raw",
    "returns",
]

_IDS = itertools.count(1)
_ACTIVE: list[TestModel] = []
_BLOCK: list[bool | None] = [None]


@dataclass(slots=True)
class Request:
    """One request an agent made: what the model would have received."""

    messages: list[dict[str, Any]]
    schema: dict[str, Any]
    model: str
    agent: str = ""
    run_id: str = ""
    iteration: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> str:
        """The content of the last message, as text."""
        content = self.messages[-1]["content"] if self.messages else ""
        return content if isinstance(content, str) else repr(content)

    @property
    def system(self) -> str:
        content = self.messages[0]["content"] if self.messages else ""
        return content if isinstance(content, str) else repr(content)


def returns(result: Any, code: str = "") -> dict[str, Any]:
    return {"action": "return", "code": code, "result": result}


def done() -> dict[str, Any]:
    return {"action": "done", "code": "", "result": ""}


def eval_and_continue(code: str) -> dict[str, Any]:
    return {"action": "eval_and_continue", "code": code, "result": ""}


def eval_and_complete(code: str) -> dict[str, Any]:
    return {"action": "eval_and_complete", "code": code, "result": ""}


class LLMErrorStep(Exception):
    """A provider error the model "returns"."""

    def __init__(self, text: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(text)
        self.retryable = retryable
        self.retry_after = retry_after


def llm_error(
    text: str, *, retryable: bool = True, retry_after: float | None = None
) -> LLMErrorStep:
    """A provider error. Retryable (a rate limit, a 5xx): fed back to the agent, which waits
    `retry_after` seconds (else its `llm_backoff` schedule) before asking again. Not retryable
    (a bad key, an unknown model): the turn ends at once with `AgentCancelled` whose
    `reason` is "provider_error" and whose `error` is `text`."""
    return LLMErrorStep(text, retryable, retry_after)


@dataclass(frozen=True, slots=True)
class RawReply:
    """A reply's raw message content (see `raw`)."""

    content: str


def raw(content: str) -> RawReply:
    """A step that is the provider's raw message content (normally the JSON of an action):
    the agent parses it as it parses a real reply, so malformed, too deeply nested or
    oversized JSON reaches the same checks (a retry for the model)."""
    return RawReply(content)


class TestModel:
    """A model served from this process. Subclasses implement `answer(request)`."""

    __legion_test_model__ = True
    __test__ = False  # not a pytest class

    def __init__(self, name: str = "test:scripted") -> None:
        self.name = name
        self.id = next(_IDS)
        self.requests: list[Request] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid: Any = None

    def answer(self, request: Request) -> Any:
        raise NotImplementedError

    # -- serving ---------------------------------------------------------------------------------

    def serve(self) -> list[Any]:
        """Start the serving thread if needed; what an agent needs to reach this model."""
        from legion.supervisor import api

        with self._lock:
            if self._thread is None:
                self._pid = api.self()
                self._thread = threading.Thread(
                    target=self._serve, name=f"legion test model {self.id}", daemon=True
                )
                self._thread.start()
        return [self._pid, self.id]

    def close(self) -> None:
        """Stop the serving thread (agents still running can no longer ask this model)."""
        from legion.supervisor import api

        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            api.send(self._pid, ["$legion.model.stop", self.id])
            thread.join(10)

    def __enter__(self) -> TestModel:
        self.serve()
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self.close()

    def _match(self, message: Any) -> bool:
        from legion.supervisor.terms import CallRequest

        if type(message) is CallRequest:
            req = message.request
            return (
                type(req) is list
                and len(req) == 3
                and req[0] == "$legion.model"
                and req[1] == self.id
            )
        return type(message) is list and message == ["$legion.model.stop", self.id]

    def _serve(self) -> None:
        from legion.supervisor import api
        from legion.supervisor.errors import NodeUnavailable

        while True:
            try:
                message = api.receive(match=self._match)
            except NodeUnavailable:
                return
            if type(message) is list:
                return
            payload = dict(message.request[2])
            request = Request(
                messages=payload.pop("messages"),
                schema=payload.pop("schema"),
                model=payload.pop("model"),
                agent=payload.pop("agent", ""),
                run_id=payload.pop("run_id", ""),
                iteration=payload.pop("iteration", 0),
                extra=payload,
            )
            with self._lock:
                self.requests.append(request)
            try:
                api.reply(message.from_, self._reply(request))
            except Exception as exc:  # the agent must hear of it, or it would wait forever
                fatal = (
                    f"{type(self).__name__}: the step for request {len(self.requests)} cannot be "
                    f"sent to the agent ({type(exc).__name__}: {exc}); a step must be plain "
                    "data (str, bool, float, an int within 64 bits, list, dict)"
                )
                api.reply(message.from_, {"fatal": fatal[:2000]})

    def _reply(self, request: Request) -> dict[str, Any]:
        try:
            step = self.answer(request)
            if callable(step) and not isinstance(step, dict):
                step = step(request)
        except LLMErrorStep as exc:
            step = exc
        except Exception as exc:
            return {"fatal": f"{type(self).__name__} failed: {type(exc).__name__}: {exc}"}
        if isinstance(step, LLMErrorStep):
            retry_after = step.retry_after
            return {"error": str(step), "retryable": step.retryable, "retry_after": retry_after}
        if isinstance(step, BaseException):
            from legion.llm import LLMError, classify

            sorted_error = classify(step, request.model)
            retry_after = getattr(sorted_error, "retry_after", None)
            retryable = isinstance(sorted_error, LLMError)
            return {"error": str(sorted_error), "retryable": retryable, "retry_after": retry_after}
        if isinstance(step, RawReply):
            return {"raw": step.content}
        return {"object": step}


class ScriptedModel(TestModel):
    """Answers with fixed steps in order; running out of steps fails the agent loudly."""

    def __init__(self, steps: Iterable[Any], name: str = "test:scripted") -> None:
        super().__init__(name)
        self.steps = list(steps)
        self._next = 0

    def answer(self, request: Request) -> Any:
        with self._lock:
            if self._next >= len(self.steps):
                raise LookupError(
                    f"the script has {len(self.steps)} steps and request {self._next + 1} came"
                )
            step = self.steps[self._next]
            self._next += 1
        return step

    @property
    def remaining(self) -> int:
        return len(self.steps) - self._next


class FunctionModel(TestModel):
    """Answers with `fn(request)`: it can look at the messages and decide."""

    def __init__(self, fn: Callable[[Request], Any], name: str = "test:function") -> None:
        super().__init__(name)
        self.fn = fn

    def answer(self, request: Request) -> Any:
        return self.fn(request)


def active_model() -> list[Any] | None:
    """What agents started now should use: the innermost active model, or the one an agent
    process inherited from its starter."""
    if _ACTIVE:
        return _ACTIVE[-1].serve()
    agent = sys.modules.get("legion.agent")
    if agent is not None:
        inherited: list[Any] | None = agent._INHERIT.get("test_model")
        return inherited
    return None


def block_real_models(flag: bool = True) -> None:
    """Make real LLM calls of agents started from here fail loudly (True) or allow them."""
    _BLOCK[0] = flag


def allow_real_models() -> None:
    _BLOCK[0] = False


def blocking() -> bool:
    """True if agents started now must not call real models."""
    if _BLOCK[0] is not None:
        return _BLOCK[0]
    agent = sys.modules.get("legion.agent")
    if agent is not None and agent._INHERIT.get("block_real"):
        return True
    return "pytest" in sys.modules
