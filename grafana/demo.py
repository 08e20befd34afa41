"""An offline demo workload for the dashboards: agents on a scripted model, forever.

    uv run python grafana/demo.py [--port 9464]

The node serves /metrics on 127.0.0.1:PORT. No network, no API key: the model is scripted.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

import demo_tools
from demo_tools import Calculator

import legion
from legion import testing
from legion.testing import eval_and_complete, eval_and_continue, llm_error, returns
from legion.tools.human import HumanTool


class DemoAgent(legion.Agent):
    """Adds numbers with Calculator."""

    tools = [Calculator]


class CarefulAgent(legion.Agent):
    """Asks a person before it acts."""

    tools = [HumanTool]

    def tool_config(self, tool: Any) -> dict[str, Any]:
        return {"timeout": 60.0} if tool is HumanTool else {}


class Flaky(legion.Server):
    """Crashes when told to; its supervisor restarts it."""

    def init(self, arg: Any) -> Any:
        return None

    def handle_cast(self, message: Any) -> Any:
        raise RuntimeError("told to crash")


class PricedModel(testing.FunctionModel):
    """A function model that reports token usage and a price, as litellm would."""

    def _reply(self, request: Any) -> dict[str, Any]:
        answer = super()._reply(request)
        answer["usage"] = {
            "prompt_tokens": random.randint(200, 2000),
            "completion_tokens": random.randint(20, 300),
            "cost": random.uniform(0.0001, 0.002),
        }
        return answer


def step(request: testing.Request) -> Any:
    time.sleep(random.uniform(0.05, 0.4))  # a model takes a while
    if request.agent == "CarefulAgent":
        if request.iteration == 0 and "careful" in request.last:
            return eval_and_continue("answer = HumanTool.ask('Go ahead?')\nanswer")
        return returns("asked")
    roll = random.random()
    if request.iteration == 0 and roll < 0.1:
        return llm_error("rate limited")
    if request.iteration == 0 and roll < 0.3:
        return eval_and_continue("x = Calculator.add(1, 2)")
    if roll < 0.4:
        return eval_and_continue("1/0")
    if roll < 0.45:
        return eval_and_continue("while True: pass")
    if roll < 0.7:
        return eval_and_complete("sum(range(1000))")
    return returns("done")


def ask_a_person() -> None:
    """A turn that waits for a person: the demo answers after a moment."""
    pid = legion.start_link(CarefulAgent)
    if pid is None:
        return
    try:
        legion.cast(pid, "careful task")
        legion.receive(
            timeout=60,
            match=lambda m: isinstance(m, dict) and m.get("type") == "legion.human_question",
        )
        time.sleep(random.uniform(0.5, 3.0))  # the person reads the question
        legion.respond(pid, "yes")
        legion.call(pid, "done?", timeout=60)  # queued behind the careful turn
    finally:
        legion.stop(pid)


def main() -> None:
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 9464
    legion.configure(metrics_port=port, sandbox_timeout=0.5, max_retries=3)
    print(f"/metrics on http://127.0.0.1:{port}/metrics; Ctrl-C to stop", flush=True)
    spec = legion.SupervisorSpec(children=[legion.child_spec(Flaky, id="flaky")])
    sup = legion.start_link(legion.Supervisor, spec)
    with PricedModel(step):
        agents = [pid for pid in (legion.start_link(DemoAgent) for _ in range(3)) if pid]
        n = 0
        while True:
            n += 1
            for pid in agents:
                try:
                    legion.call(pid, f"task {n}", timeout=60)
                except legion.AgentCancelled:
                    pass
            child = legion.Supervisor.which_children(sup)[0].pid if sup is not None else None
            if n % 10 == 0 and isinstance(child, legion.Pid):
                legion.cast(child, "crash")
            if n % 5 == 0:
                ask_a_person()
            if n % 20 == 0:
                legion.reload(demo_tools.__name__)  # here and in every agent using it


if __name__ == "__main__":
    main()
