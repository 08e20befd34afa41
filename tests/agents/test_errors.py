"""Errors a user can act on and bad model replies ([devloop] §2, [hardening] §2, §4, §6).

Provider errors that cannot heal end the turn at once; transient ones are retried after a
backoff; every cancel carries the last error; a reply too deep or too big is a retry, never a
crash; sub-agents and feedback messages are bounded. The real litellm path is in
test_provider.py (slow: it imports litellm).
"""

from __future__ import annotations

import itertools
import json
import pickle
from typing import Any

import pytest
import trio
import trio.testing
from agents_for_tests import NoToolAgent, OrchestratorAgent

import legion
from legion import testing
from legion.llm import LLMError, ProviderError, Usage
from legion.loop import MAX_BACKOFF, Conversation, TurnSettings, backoff_delay, run_turn
from legion.prompt import action_schema
from legion.supervisor.errors import ProcessExit
from legion.testing import done, eval_and_complete, eval_and_continue, llm_error, raw, returns

# -- provider errors ------------------------------------------------------------------------------


def test_a_provider_error_that_cannot_heal_ends_the_turn_at_once() -> None:
    message = "litellm.AuthenticationError: Incorrect API key provided: sk-bad"
    with (
        testing.FunctionModel(lambda r: llm_error(message, retryable=False)) as model,
        pytest.raises(legion.AgentCancelled) as info,
    ):
        legion.execute(NoToolAgent, "x")
    assert len(model.requests) == 1  # not retried
    assert info.value.reason == "provider_error"
    assert info.value.error == message
    assert "Incorrect API key provided" in str(info.value)


def test_transient_provider_errors_are_retried_then_cancel_with_the_last_error() -> None:
    errors = iter(f"RateLimitError: slow down ({n})" for n in range(10))
    with (
        testing.FunctionModel(lambda r: llm_error(next(errors))) as model,
        pytest.raises(legion.AgentCancelled) as info,
    ):
        legion.execute(NoToolAgent, "x", llm_backoff=0)
    assert len(model.requests) == 4  # 3 retries, the 4th failure cancels
    assert info.value.reason == "reached_max_retries"
    assert info.value.error == "LLM request failed: RateLimitError: slow down (3)"
    assert "slow down (3)" in str(info.value)


def test_a_transient_error_then_an_answer_recovers() -> None:
    with testing.ScriptedModel([llm_error("503 overloaded", retry_after=0.01), returns("ok")]):
        assert legion.execute(NoToolAgent, "x") == "ok"


@pytest.mark.parametrize(
    ("step", "retried"),
    [(ConnectionRefusedError("connection refused"), True), (RuntimeError("no such model"), False)],
)
def test_an_exception_step_is_sorted_like_a_provider_error(
    step: BaseException, *, retried: bool
) -> None:
    with testing.ScriptedModel([step, returns("ok")]) as model:
        if retried:
            assert legion.execute(NoToolAgent, "x", llm_backoff=0) == "ok"
        else:
            with pytest.raises(legion.AgentCancelled, match="no such model"):
                legion.execute(NoToolAgent, "x")
    assert len(model.requests) == (2 if retried else 1)


def test_a_cancel_carries_the_code_error_it_ended_on() -> None:
    with (
        testing.FunctionModel(lambda r: eval_and_continue("1 / 0")),
        pytest.raises(legion.AgentCancelled) as info,
    ):
        legion.execute(NoToolAgent, "x")
    assert info.value.reason == "reached_max_retries"
    assert info.value.error is not None and "ZeroDivisionError" in info.value.error
    assert "(last error: line 1: ZeroDivisionError: division by zero)" in str(info.value)


def test_a_cancel_without_failures_carries_no_error() -> None:
    with (
        testing.FunctionModel(lambda r: eval_and_continue("1")),
        pytest.raises(legion.AgentCancelled) as info,
    ):
        legion.execute(NoToolAgent, "x", max_iterations=2)
    assert info.value.reason == "reached_max_iterations"
    assert info.value.error is None
    assert str(info.value) == "the agent cancelled the turn: reached_max_iterations"


def test_a_cancel_survives_pickling_with_its_reason_and_error() -> None:
    cancelled = legion.AgentCancelled("reached_max_retries", "ValueError: bad\n\ntraceback")
    copy = pickle.loads(pickle.dumps(cancelled))
    assert (copy.reason, copy.error, str(copy)) == (
        "reached_max_retries",
        "ValueError: bad\n\ntraceback",
        "the agent cancelled the turn: reached_max_retries (last error: ValueError: bad)",
    )


# -- backoff, on trio's mock clock ----------------------------------------------------------------


def _settings(ask: Any, **config: Any) -> TurnSettings:
    cfg = {
        "max_message_length": 20_000,
        "binding_scope": "turn",
        "max_iterations": 10,
        "max_retries": 3,
        "llm_backoff": 0.5,
        **config,
    }

    async def no_eval(code: str, bindings: Any) -> Any:
        raise AssertionError("no code runs in these turns")

    return TurnSettings(cfg, ["return"], action_schema(["return"], None), None, False, ask, no_eval)


def _turn_times(errors: list[BaseException], **config: Any) -> tuple[Any, list[float]]:
    """Run one turn whose requests fail with `errors`, then answer; when each request came."""
    times: list[float] = []

    async def ask(messages: list[dict[str, Any]], meta: dict[str, Any]) -> Any:
        times.append(trio.current_time())
        if len(times) <= len(errors):
            raise errors[len(times) - 1]
        return {"action": "return", "code": "", "result": "ok"}, Usage("m")

    async def main() -> Any:
        conv = Conversation([{"role": "system", "content": "s"}])
        return await run_turn(conv, "task", _settings(ask, **config))

    outcome = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcome, times


def test_transient_errors_wait_litellm_s_exponential_backoff_with_jitter() -> None:
    errors: list[BaseException] = [LLMError("429", transient=True) for _ in range(3)]
    outcome, times = _turn_times(errors)
    assert outcome == ("ok", "ok", None)
    waits = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        assert 0.5 * 2**attempt <= wait <= 0.75 * 2**attempt


def test_a_retry_after_from_the_provider_is_honoured() -> None:
    outcome, times = _turn_times([LLMError("429", transient=True, retry_after=7.0)])
    assert outcome[0] == "ok"
    assert times[1] - times[0] == pytest.approx(7.0)


def test_model_mistakes_and_fatal_errors_do_not_wait() -> None:
    outcome, times = _turn_times([LLMError("not JSON"), LLMError("not JSON")])
    assert outcome[0] == "ok" and times[-1] - times[0] == 0
    outcome, times = _turn_times([ProviderError("bad key")])
    assert outcome == ("cancel", "provider_error", "bad key") and times == [0]


def test_backoff_is_capped_and_can_be_disabled() -> None:
    assert MAX_BACKOFF <= backoff_delay(30, 0.5) <= 1.5 * MAX_BACKOFF
    assert backoff_delay(3, 0) == 0
    assert backoff_delay(0, 0.5, retry_after=600) <= 0.75  # past 60 s: our schedule


# -- replies too deep or too big ------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def test_deep_or_huge_replies_are_fed_back_and_the_agent_lives_on() -> None:
    steps = [
        raw("[" * 100_000 + "]" * 100_000),  # past any recursion limit
        raw('{"action": "return", "code": "", "result": ' + "9" * 5000 + "}"),  # int-string limit
        raw('{"action": "return", "code": "", "result": ' + "9" * 30 + "}"),  # past 64 bits
        returns(_nested(200)),  # arrives intact over the wire, refused by the agent
        raw(json.dumps(returns("fine"))),
    ]
    with testing.ScriptedModel(steps) as model:
        pid = legion.start_link(NoToolAgent, max_retries=4)
        try:
            assert legion.call(pid, "x") == "fine"
            feedback = [r.last for r in model.requests[1:]]
            assert "LLM response is not valid JSON: nested too deeply" in feedback[0]
            assert "LLM response is not valid JSON: Integer value out of range" in feedback[1]
            assert "holds an integer of 100 bits; integers must fit in 64 bits" in feedback[2]
            assert "nested more than 64 levels deep" in feedback[3]
            assert all(text.startswith("LLM request failed:") for text in feedback)
            assert legion.get_messages(pid)[-1]["role"] == "assistant"  # the agent still answers
        finally:
            legion.stop(pid)


@pytest.mark.parametrize(
    "bad", [object(), 2**100], ids=["an object msgpack cannot carry", "an int past 64 bits"]
)
def test_a_scripted_step_that_cannot_be_sent_fails_the_turn_never_hangs(bad: object) -> None:
    with (
        testing.ScriptedModel([returns(bad)]),
        pytest.raises(ProcessExit, match="the step for request 1 cannot be sent to the agent"),
    ):
        legion.execute(NoToolAgent, "x", timeout=60)


# -- the conversation keeps what eval_and_complete answered ---------------------------------------


@pytest.mark.parametrize(("scope", "listed"), [("turn", False), ("conversation", True)])
def test_eval_and_complete_keeps_its_result_for_the_next_turn(scope: str, *, listed: bool) -> None:
    with testing.ScriptedModel([eval_and_complete("answer = 6 * 7\nanswer"), done()]) as model:
        pid = legion.start_link(NoToolAgent, binding_scope=scope)
        try:
            assert legion.call(pid, "compute") == 42
            legion.call(pid, "what did you answer?")
        finally:
            legion.stop(pid)
    seen = model.requests[1].messages
    assert [m["role"] for m in seen[-3:]] == ["assistant", "user", "user"]
    assert seen[-2]["content"].startswith("Code executed successfully. Result:\n```\n42\n```")
    assert ("Available variables: `answer`" in seen[-2]["content"]) is listed
    assert seen[-1]["content"] == "what did you answer?"


# -- bounds: sub-agents and feedback size ---------------------------------------------------------


def _orchestrate(code: str) -> testing.FunctionModel:
    def answer(request: testing.Request) -> dict[str, object]:
        if request.agent == "WorkerAgent":
            return returns("w")
        if len(request.messages) == 2:
            return eval_and_continue(code)
        return done()

    return testing.FunctionModel(answer)


def test_max_sub_agents_bounds_a_fan_out_before_it_starts() -> None:
    code = "AgentTool.parallel([('WorkerAgent', str(i)) for i in range(3)])"
    with _orchestrate(code) as model:
        legion.execute(OrchestratorAgent, "fan out", max_sub_agents=2)
    assert not [r for r in model.requests if r.agent == "WorkerAgent"]  # none started
    feedback = model.requests[-1].last
    assert "TooManySubAgents" in feedback
    assert "cannot start 3 more sub-agent(s): 0 already running" in feedback
    assert "max_sub_agents=2" in feedback


def test_too_many_sub_agents_is_public_and_rooted_in_legion_error() -> None:
    assert "TooManySubAgents" in legion.__all__
    assert legion.TooManySubAgents is legion.agent.TooManySubAgents
    assert issubclass(legion.TooManySubAgents, legion.LegionError)


def test_long_lived_sub_agents_count_against_max_sub_agents() -> None:
    code = "handles = [AgentTool.start_link('WorkerAgent') for _ in range(3)]"
    with _orchestrate(code) as model:
        legion.execute(OrchestratorAgent, "keep helpers", max_sub_agents=2)
    assert "cannot start 1 more sub-agent(s): 2 already running" in model.requests[-1].last


def test_max_sub_agents_per_turn_bounds_sequential_starts() -> None:
    code = "results = [AgentTool.call('WorkerAgent', str(i)) for i in range(5)]"
    with _orchestrate(code) as model:
        legion.execute(OrchestratorAgent, "one by one", max_sub_agents_per_turn=3)
    assert len([r for r in model.requests if r.agent == "WorkerAgent"]) == 3
    assert "this turn already started 3" in model.requests[-1].last
    assert "max_sub_agents_per_turn=3" in model.requests[-1].last


def test_every_part_of_a_feedback_message_respects_max_message_length() -> None:
    limit = 300
    many = "\n".join(f"v_{'x' * 40}_{i} = {i}" for i in range(300))  # 300 long names
    huge_name = f"{'n' * 5000} = 1"
    loud = "print('o' * 5000)\n'r' * 5000"
    huge_error = "raise ValueError('e' * 50_000)"
    steps = [eval_and_continue(c) for c in (huge_name, many, loud, huge_error)] + [done()]
    with testing.ScriptedModel(steps) as model:
        legion.execute(NoToolAgent, "x", max_message_length=limit)
    framing = 250  # fixed texts around the parts and the truncation notes
    for request in model.requests[1:]:
        assert len(request.last.encode()) <= limit + framing, request.last
    assert "1 (their names are too long to list" in model.requests[1].last
    assert "`v_" in model.requests[2].last  # the names that fit, then how many more
    assert "more (not listed: max_message_length)" in model.requests[2].last
    assert "[... truncated" in model.requests[3].last and "Output:" in model.requests[3].last
    assert "ValueError" in model.requests[4].last
