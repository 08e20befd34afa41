"""The loop (research/legion.md §3, §10 "Executor"): actions, counters, feedback texts."""

from __future__ import annotations

import json

import pytest
from agents_for_tests import MathAgent, NoToolAgent, ReturnOnlyAgent, SchemaAgent

import legion
from legion import testing
from legion.testing import done, eval_and_complete, eval_and_continue, llm_error, returns


def test_return_gives_the_result() -> None:
    with testing.ScriptedModel([returns("hello")]):
        assert legion.execute(NoToolAgent, "say hello") == "hello"


def test_done_gives_none() -> None:
    with testing.ScriptedModel([done()]):
        assert legion.execute(NoToolAgent, "nothing to do") is None


def test_eval_and_complete_gives_the_code_value() -> None:
    with testing.ScriptedModel([eval_and_complete("1 + 1")]):
        assert legion.execute(NoToolAgent, "add") == 2


def test_bindings_flow_within_a_turn() -> None:
    with testing.ScriptedModel([eval_and_continue("x = 10"), eval_and_complete("x * 2")]):
        assert legion.execute(NoToolAgent, "double") == 20


def test_endless_continue_cancels_with_max_iterations() -> None:
    with (
        testing.FunctionModel(lambda r: eval_and_continue("1")) as model,
        pytest.raises(legion.AgentCancelled) as info,
    ):
        legion.execute(NoToolAgent, "loop", max_iterations=3)
    assert info.value.reason == "reached_max_iterations"
    assert len(model.requests) == 3  # the 3rd continue is the last step; no 4th request


def test_code_that_always_raises_cancels_with_max_retries() -> None:
    with (
        testing.FunctionModel(lambda r: eval_and_continue("1 / 0")) as model,
        pytest.raises(legion.AgentCancelled) as info,
    ):
        legion.execute(NoToolAgent, "fail")
    assert info.value.reason == "reached_max_retries"
    assert len(model.requests) == 4  # 3 failures fed back, the 4th cancels
    feedback = model.requests[-1].last
    assert feedback.startswith("Code execution failed:\n\n")
    assert "ZeroDivisionError" in feedback
    assert feedback.endswith("Please fix the error and try again.")


def test_retries_reset_after_a_successful_continue() -> None:
    steps = [eval_and_continue("1/0")] * 3 + [eval_and_continue("1")]
    steps += [eval_and_continue("1/0")] * 3 + [returns("made it")]
    with testing.ScriptedModel(steps):
        assert legion.execute(NoToolAgent, "retry") == "made it"


def test_llm_error_then_return_recovers_and_is_reported_as_llm_error() -> None:
    with testing.ScriptedModel([llm_error("connection refused"), returns("recovered")]) as model:
        assert legion.execute(NoToolAgent, "x") == "recovered"
    feedback = model.requests[1].last
    assert feedback.startswith("LLM request failed:")
    assert "connection refused" in feedback
    assert "Code execution failed" not in feedback


def test_missing_action_then_return_recovers() -> None:
    with testing.ScriptedModel([{"code": "", "result": "x"}, returns("ok")]) as model:
        assert legion.execute(NoToolAgent, "x") == "ok"
    assert "Response missing required 'action' field" in model.requests[1].last


def test_assistant_message_is_the_json_of_the_action() -> None:
    step = eval_and_continue("y = 5")
    with testing.ScriptedModel([step, returns("r")]) as model:
        legion.execute(NoToolAgent, "x")
    assistant = model.requests[1].messages[-2]
    assert assistant["role"] == "assistant"
    assert json.loads(assistant["content"]) == step


def test_available_variables_are_listed_after_a_continue() -> None:
    with testing.ScriptedModel([eval_and_continue("posts = [1, 2]"), done()]) as model:
        legion.execute(NoToolAgent, "x")
    last = model.requests[1].last
    assert last.startswith("Code executed successfully. Result:")
    assert "Available variables:" in last and "`posts`" in last


def test_iteration_scope_lists_no_variables_and_forgets_them() -> None:
    steps = [eval_and_continue("x = 1"), eval_and_continue("x"), returns("r")]
    with testing.ScriptedModel(steps) as model:
        legion.execute(NoToolAgent, "x", binding_scope="iteration")
    assert "Available variables" not in model.requests[1].last
    assert "NameError" in model.requests[2].last


def test_printed_output_goes_back_with_the_value() -> None:
    with testing.ScriptedModel([eval_and_continue("print('hello there')\n41 + 1"), done()]) as m:
        legion.execute(NoToolAgent, "x")
    assert "42" in m.requests[1].last
    assert "Output:\n```\nhello there" in m.requests[1].last


def test_tool_is_callable_from_code_with_its_config() -> None:
    with testing.ScriptedModel([eval_and_complete("MathTool.add(2, 3) + MathTool.scale(2)")]):
        assert legion.execute(MathAgent, "x") == 11  # factor 3 from tool_config


def test_a_raising_tool_is_fed_back() -> None:
    with testing.ScriptedModel([eval_and_continue("MathTool.boom()"), done()]) as model:
        legion.execute(MathAgent, "x")
    assert "tool exploded" in model.requests[1].last


def test_third_party_module_tool_is_callable() -> None:
    from agents_for_tests import ModuleToolAgent

    with testing.ScriptedModel([eval_and_complete("json.encode([1, 2])")]) as model:
        assert legion.execute(ModuleToolAgent, "x") == b"[1,2]"
    assert "### json" in model.requests[0].system


def test_max_message_length_truncates_results_and_errors() -> None:
    steps = [
        eval_and_continue("'a' * 5000"),
        eval_and_continue("raise ValueError('b' * 5000)"),
        done(),
    ]
    with testing.ScriptedModel(steps) as model:
        legion.execute(NoToolAgent, "x", max_message_length=200)
    for request in model.requests[1:]:
        assert "[... truncated" in request.last
        assert len(request.last.encode()) < 1000


def test_schema_sent_is_strict_and_recursive() -> None:
    with testing.ScriptedModel([returns({"sentiment": "positive", "score": 1.0})]) as model:
        legion.execute(SchemaAgent, "x")
    schema = model.requests[0].schema
    assert schema["required"] == ["action", "code", "result"]
    assert schema["additionalProperties"] is False
    result = schema["properties"]["result"]
    assert result["additionalProperties"] is False
    assert set(result["properties"]) == {"sentiment", "score", "tags"}
    assert result["properties"]["tags"]["items"]["additionalProperties"] is False


def test_return_with_a_map_passes_it_through() -> None:
    value = {"sentiment": "negative", "score": 0.25, "tags": [{"t": "x"}]}
    with testing.ScriptedModel([returns(value)]):
        assert legion.execute(SchemaAgent, "x") == value


def test_default_action_types_are_all_four() -> None:
    with testing.ScriptedModel([done()]) as model:
        legion.execute(NoToolAgent, "x")
    enum = model.requests[0].schema["properties"]["action"]["enum"]
    assert enum == ["eval_and_continue", "eval_and_complete", "return", "done"]


def test_restricted_action_types_refuse_eval() -> None:
    with (
        testing.FunctionModel(lambda r: eval_and_continue("1")) as model,
        pytest.raises(legion.AgentCancelled) as info,
    ):
        legion.execute(ReturnOnlyAgent, "x")
    assert info.value.reason == "reached_max_retries"
    assert "is not allowed for ReturnOnlyAgent" in model.requests[1].last
    assert model.requests[0].schema["properties"]["action"]["enum"] == ["return", "done"]
    with testing.ScriptedModel([returns("fine")]):
        assert legion.execute(ReturnOnlyAgent, "x") == "fine"


def test_eval_with_empty_code_is_an_unexpected_action() -> None:
    with testing.ScriptedModel([eval_and_continue(""), done()]) as model:
        legion.execute(NoToolAgent, "x")
    assert "Unexpected action" in model.requests[1].last


def test_sandbox_timeout_is_fed_back() -> None:
    with testing.ScriptedModel([eval_and_continue("while True: pass"), done()]) as model:
        legion.execute(NoToolAgent, "x", sandbox_timeout=0.5)
    assert "timeout" in model.requests[1].last.lower()
