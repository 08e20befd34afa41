"""`legion.testing`: models scripted from the test process, and the guard on real calls."""

from __future__ import annotations

import pytest
from agents_for_tests import NoToolAgent

import legion
from legion import testing
from legion.supervisor.errors import ProcessExit
from legion.testing import done, returns


def test_a_real_llm_call_under_pytest_fails_loudly() -> None:
    assert testing.blocking()
    with pytest.raises(ProcessExit, match="RealModelBlocked"):
        legion.execute(NoToolAgent, "x")


def test_a_script_that_runs_out_fails_loudly() -> None:
    with testing.ScriptedModel([]), pytest.raises(ProcessExit, match="ModelFatal"):
        legion.execute(NoToolAgent, "x")


def test_a_model_function_that_raises_fails_loudly() -> None:
    def broken(request: testing.Request) -> dict[str, object]:
        raise KeyError("oops")

    with testing.FunctionModel(broken), pytest.raises(ProcessExit, match="KeyError"):
        legion.execute(NoToolAgent, "x")


def test_a_model_passed_as_option_is_served_and_named() -> None:
    model = testing.ScriptedModel([returns("r")], name="test:mine")
    try:
        assert legion.execute(NoToolAgent, "x", model=model) == "r"
    finally:
        model.close()
    assert model.requests[0].model == "test:mine"


def test_requests_carry_agent_run_id_and_iteration() -> None:
    with testing.ScriptedModel([testing.eval_and_continue("1"), done()]) as model:
        legion.execute(NoToolAgent, "x")
    first, second = model.requests
    assert first.agent == "NoToolAgent" and first.run_id == second.run_id != ""
    assert (first.iteration, second.iteration) == (0, 1)


def test_a_function_model_sees_the_messages() -> None:
    def echo(request: testing.Request) -> dict[str, object]:
        return returns(request.messages[-1]["content"].upper())

    with testing.FunctionModel(echo):
        assert legion.execute(NoToolAgent, "shout") == "SHOUT"
