"""HumanTool and AgentTool."""

from __future__ import annotations

import pytest
from agents_for_tests import HumanAgent, OrchestratorAgent, ShortHumanAgent, WorkerAgent

import legion
from legion import testing
from legion.testing import done, eval_and_complete, eval_and_continue, returns


def _question() -> dict[str, object]:
    message: dict[str, object] = legion.receive(
        timeout=30,
        match=lambda m: isinstance(m, dict) and m.get("type") == "legion.human_question",
    )
    return message


def test_human_tool_blocks_until_respond() -> None:
    steps = [
        eval_and_continue("answer = HumanTool.ask('Proceed?')\nanswer"),
        returns("ok"),
        returns("second"),
    ]
    with testing.ScriptedModel(steps) as model:
        pid = legion.start_link(HumanAgent)
        try:
            legion.cast(pid, "do the risky thing")
            question = _question()
            assert question["question"] == "Proceed?"
            assert question["agent"] == pid
            assert question["run_id"] == legion.call(pid, ["$legion.agent", "info"])["run_id"]
            pending = legion.pending_questions(pid)
            assert [q["question"] for q in pending] == ["Proceed?"]
            assert legion.respond(pid, "Yes, proceed") is True
            assert legion.call(pid, "and then?") == "second"  # queued behind the first turn
        finally:
            legion.stop(pid)
    assert "Yes, proceed" in model.requests[1].last


def test_respond_with_nothing_pending_returns_false() -> None:
    with testing.ScriptedModel([]):
        pid = legion.start_link(HumanAgent)
        try:
            assert legion.respond(pid, "hello?") is False
        finally:
            legion.stop(pid)


def test_human_tool_has_its_own_timeout() -> None:
    steps = [eval_and_continue("HumanTool.ask('anyone?')"), done()]
    with testing.ScriptedModel(steps) as model:
        legion.execute(ShortHumanAgent, "ask")
    assert "timed out waiting for a human response" in model.requests[1].last


def test_human_tool_refuses_eval_and_complete() -> None:
    steps = [eval_and_complete("HumanTool.ask('final?')"), done()]
    with testing.ScriptedModel(steps) as model:
        legion.execute(HumanAgent, "ask")
    assert "cannot be used with eval_and_complete" in model.requests[1].last


def _route(worker_answer: object, orchestrator_code: str) -> testing.FunctionModel:
    def answer(request: testing.Request) -> dict[str, object]:
        if request.agent == "WorkerAgent":
            return returns(f"{worker_answer}:{request.messages[-1]['content']}")
        if len(request.messages) == 2:
            return eval_and_complete(orchestrator_code)
        return done()

    return testing.FunctionModel(answer)


def test_agent_tool_call_runs_a_listed_sub_agent() -> None:
    with _route("w", "AgentTool.call('WorkerAgent', 'job')") as model:
        assert legion.execute(OrchestratorAgent, "delegate") == "w:job"
    assert "WorkerAgent: Does one small job for an orchestrator." in model.requests[0].system
    assert "second paragraph" not in model.requests[0].system


def test_agent_tool_refuses_unlisted_agents() -> None:
    steps = [eval_and_continue("AgentTool.call('HumanAgent', 'x')"), done()]
    with testing.ScriptedModel(steps) as model:
        legion.execute(OrchestratorAgent, "x")
    assert "'HumanAgent' is not allowed; allowed agents: ['WorkerAgent']" in model.requests[1].last


def test_agent_tool_parallel_and_pipeline() -> None:
    code = "AgentTool.parallel([('WorkerAgent', 'a'), ('WorkerAgent', 'b')])"
    with _route("w", code):
        assert legion.execute(OrchestratorAgent, "fan out") == ["w:a", "w:b"]
    code = "AgentTool.pipeline([('WorkerAgent', 'a'), ('WorkerAgent', 'then {previous}')])"
    with _route("w", code):
        assert legion.execute(OrchestratorAgent, "chain") == "w:then w:a"


def test_agent_tool_start_link_cast_call_and_children_stop_with_the_parent() -> None:
    code = (
        "h = AgentTool.start_link('WorkerAgent')\n"
        "AgentTool.cast(h, 'warm up')\n"
        "AgentTool.call(h, 'real job')"
    )
    with _route("w", code) as model:
        pid = legion.start_link(OrchestratorAgent)
        try:
            assert legion.call(pid, "go") == "w:real job"
        finally:
            legion.stop(pid)
    workers = {r.run_id for r in model.requests if r.agent == "WorkerAgent"}
    assert len(workers) == 1
    # the sub-agent was stopped with its parent: nothing is left (the leak fixture checks it too)


def test_sub_agents_know_their_parent_run_id() -> None:
    with _route("w", "AgentTool.call('WorkerAgent', 'job')") as model:
        legion.execute(OrchestratorAgent, "x")
    assert len({r.run_id for r in model.requests}) == 2


def test_parallel_and_pipeline_from_the_application() -> None:
    def answer(request: testing.Request) -> dict[str, object]:
        return returns(f"done:{request.messages[1]['content']}")

    with testing.FunctionModel(answer):
        tasks = [(WorkerAgent, "a"), (WorkerAgent, "b"), (WorkerAgent, "c")]
        assert legion.parallel(tasks) == ["done:a", "done:b", "done:c"]
        assert legion.pipeline([(WorkerAgent, "one")]) == "done:one"
        steps = [(WorkerAgent, "one"), (WorkerAgent, lambda prev: f"process: {prev}")]
        assert legion.pipeline(steps) == "done:process: done:one"
        first = [(WorkerAgent, lambda prev: f"got {prev}")]
        assert legion.pipeline(first) == "done:got None"


def test_then_runs_the_next_agent_on_the_previous_value_and_passes_a_cancel_through() -> None:
    def answer(request: testing.Request) -> dict[str, object]:
        return returns(f"done:{request.messages[1]['content']}")

    with testing.FunctionModel(answer) as model:
        first = legion.execute(WorkerAgent, "one")
        assert (
            legion.then(first, WorkerAgent, lambda prev: f"after {prev}") == "done:after done:one"
        )
        asked = len(model.requests)
        cancelled = legion.AgentCancelled("reached_max_iterations")
        assert legion.then(cancelled, WorkerAgent, lambda prev: 1 / 0) is cancelled
        assert len(model.requests) == asked  # no model call for a cancelled previous step


def test_parallel_raises_the_first_cancel_in_list_order() -> None:
    def answer(request: testing.Request) -> dict[str, object]:
        task = request.messages[1]["content"]
        if task == "ok":
            return returns("fine")
        return eval_and_continue("1/0")

    with testing.FunctionModel(answer), pytest.raises(legion.AgentCancelled) as info:
        legion.parallel([(WorkerAgent, "ok"), (WorkerAgent, "bad")])
    assert info.value.reason == "reached_max_retries"


def test_pipeline_halts_on_cancel_and_rejects_bad_steps() -> None:
    calls: list[str] = []

    def answer(request: testing.Request) -> dict[str, object]:
        calls.append(request.messages[1]["content"])
        return eval_and_continue("1/0")

    with testing.FunctionModel(answer), pytest.raises(legion.AgentCancelled):
        legion.pipeline([(WorkerAgent, "first"), (WorkerAgent, "never")])
    assert "never" not in calls
    with pytest.raises(TypeError, match="expected task to be a str or a function"):
        legion.pipeline([(WorkerAgent, 42)])


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_sub_agents_end_with_their_parent(how: str) -> None:
    import threading

    worker_asked = threading.Event()

    def answer(request: testing.Request) -> dict[str, object]:
        if request.agent == "WorkerAgent":
            worker_asked.set()
            return returns("working")
        return eval_and_complete("AgentTool.start_link('WorkerAgent', 'stay alive')")

    with testing.FunctionModel(answer) as model:
        pid = legion.start_link(OrchestratorAgent)
        assert legion.call(pid, "go").startswith("WorkerAgent#")
        assert worker_asked.wait(10)
        worker = next(r for r in model.requests if r.agent == "WorkerAgent")
        assert worker.extra["parent_run_id"] == model.requests[0].run_id
        ref = legion.monitor(worker.extra["pid"])
        if how == "stop":
            legion.stop(pid)
        else:
            legion.exit(pid, "kill")
        down = legion.receive(timeout=10, match=lambda m: isinstance(m, legion.Down))
    assert down.ref == ref and down.pid == worker.extra["pid"]


def test_parallel_timeout_raises_and_stops_the_agents() -> None:
    import threading

    release = threading.Event()

    def stuck(request: testing.Request) -> dict[str, object]:
        release.wait(30)
        return returns("late")

    with testing.FunctionModel(stuck):
        try:
            with pytest.raises(legion.CallTimeout):
                legion.parallel([(WorkerAgent, "a"), (WorkerAgent, "b")], timeout=0.5)
        finally:
            release.set()  # let the model thread go before it is closed


def test_a_sync_tool_can_run_a_sub_agent_with_the_plain_api() -> None:
    def answer(request: testing.Request) -> dict[str, object]:
        if request.agent == "WorkerAgent":
            return returns(f"worker did {request.messages[-1]['content']}")
        return eval_and_complete("MathTool.delegate('the dishes')")

    with testing.FunctionModel(answer):
        assert legion.execute(OrchestratorAgent, "x") == "worker did the dishes"


def test_sub_agents_inherit_configure_but_not_the_parents_start_options() -> None:
    legion.configure(model="openai:from-configure")
    try:
        with _route("w", "AgentTool.call('WorkerAgent', 'job')") as model:
            legion.execute(OrchestratorAgent, "x", model="openai:parent-only")
    finally:
        legion.config._GLOBAL.clear()
    models = {r.agent: r.model for r in model.requests}
    assert models == {
        "OrchestratorAgent": "openai:parent-only",
        "WorkerAgent": "openai:from-configure",
    }


def test_agent_tool_parallel_timeout_fails_the_tool_call_in_the_sandbox() -> None:
    import threading

    release = threading.Event()
    code = (
        "try:\n"
        "    AgentTool.parallel([('WorkerAgent', 'a')], timeout=0.3)\n"
        "    r = 'finished'\n"
        "except Exception:\n"
        "    r = 'timed out'\n"
        "r"
    )

    def answer(request: testing.Request) -> dict[str, object]:
        if request.agent == "WorkerAgent":
            release.wait(30)
            return returns("late")
        return eval_and_complete(code)

    with testing.FunctionModel(answer):
        try:
            assert legion.execute(OrchestratorAgent, "fan out, but not for long") == "timed out"
        finally:
            release.set()


def test_a_human_answer_does_not_count_against_the_sandbox_timeout() -> None:
    """Legion's hole 6a, not copied: the sandbox timeout is 0.5 s, the human answers later."""
    import time

    steps = [
        eval_and_continue("answer = HumanTool.ask('Proceed?')\nanswer"),
        returns("ok"),
        returns("second"),
    ]
    with testing.ScriptedModel(steps) as model:
        pid = legion.start_link(HumanAgent, sandbox_timeout=0.5)
        try:
            legion.cast(pid, "do it")
            _question()
            time.sleep(1.0)  # the person takes longer than the sandbox timeout
            assert legion.respond(pid, "yes") is True
            assert legion.call(pid, "and?") == "second"
        finally:
            legion.stop(pid)
    assert "yes" in model.requests[1].last
