"""An offline workload that touches every metric the dashboards query (used by the real check)."""

from __future__ import annotations

from typing import Any

import reload_me
from telemetry_agents import AskingAgent, Flaky, TelemetryAgent

import legion
from legion import testing
from legion.testing import eval_and_complete, eval_and_continue, llm_error, returns


class CostedModel(testing.ScriptedModel):
    """A scripted model that also reports token usage and a price, as litellm would."""

    def _reply(self, request: Any) -> dict[str, Any]:
        answer = super()._reply(request)
        answer["usage"] = {"prompt_tokens": 120, "completion_tokens": 30, "cost": 0.0004}
        return answer


def turn_script() -> list[Any]:
    return [
        llm_error("rate limited"),
        eval_and_continue("x = CounterTool.add(1, 2)"),
        eval_and_continue("1/0"),
        eval_and_continue("while True: pass"),
        eval_and_complete("x"),
    ]


def run(rounds: int = 2) -> dict[str, Any]:
    """Run the workload; returns what stays alive (a supervisor, an idle agent)."""
    for _ in range(rounds):
        with CostedModel(turn_script()):
            assert legion.execute(TelemetryAgent, "add", sandbox_timeout=0.5, max_retries=5) == 3
    with CostedModel([llm_error("down")]):
        try:
            legion.execute(TelemetryAgent, "cancel", max_retries=0)
        except legion.AgentCancelled:
            pass
    ask_a_human()
    legion.reload(reload_me.__name__)
    spec = legion.SupervisorSpec(children=[legion.child_spec(Flaky, id="flaky")])
    sup = legion.start_link(legion.Supervisor, spec)
    assert sup is not None
    child = legion.Supervisor.which_children(sup)[0].pid
    legion.cast(child, "crash")
    idle_model = CostedModel([returns("idle")])
    idle_model.__enter__()
    idle = legion.start_link(TelemetryAgent)
    return {"supervisor": sup, "idle": idle, "model": idle_model}


def ask_a_human() -> None:
    """A turn that waits for a person's answer (the human wait metrics)."""
    script = [
        eval_and_continue("answer = HumanTool.ask('Proceed?')\nanswer"),
        returns("done"),
        returns("second"),
    ]
    with CostedModel(script):
        pid = legion.start_link(AskingAgent)
        assert pid is not None
        try:
            legion.cast(pid, "ask first")
            legion.receive(
                timeout=30,
                match=lambda m: isinstance(m, dict) and m.get("type") == "legion.human_question",
            )
            assert legion.respond(pid, "yes")
            assert legion.call(pid, "and then?") == "second"  # queued behind the first turn
        finally:
            legion.stop(pid)


def stop(kept: dict[str, Any]) -> None:
    """Stop what `run` left alive."""
    legion.stop(kept["supervisor"], "shutdown")
    legion.stop(kept["idle"], "shutdown")
    kept["model"].__exit__(None, None, None)
