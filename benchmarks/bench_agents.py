"""Agent benchmark: turns per second with a scripted model, the framework's overhead per step,
and the size of the system prompt, each beside smolagents' CodeAgent running the same steps.

    uv run --extra dev python benchmarks/bench_agents.py [--quick]

smolagents is installed only for this benchmark, in a throwaway environment
(`uv run --no-project --with smolagents`), never as a dependency. Its CodeAgent runs the code
in-process (LocalPythonExecutor, no isolation); ours runs every step in a forked, seccomp'd
sandbox child and every model request crosses from the agent process to this one, so the
comparison prices isolation and process separation, not only code quality.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import legion
from legion import testing

QUICK = "--quick" in sys.argv
TURNS = 30 if QUICK else 150

SMOLAGENTS = r"""
import json, sys, time
from smolagents import CodeAgent, tool
from smolagents.models import Model, ChatMessage, MessageRole

class Scripted(Model):
    def __init__(self, replies):
        super().__init__(model_id="scripted")
        self.replies, self.i = replies, 0
    def generate(self, messages, stop_sequences=None, response_format=None,
                 tools_to_call_from=None, **kw):
        reply = self.replies[self.i % len(self.replies)]
        self.i += 1
        return ChatMessage(role=MessageRole.ASSISTANT, content=reply)

@tool
def fetch_posts() -> list:
    '''Fetches recent posts: a list of {"title": str, "points": int}.'''
    return [{"title": "Advent of Code", "points": 10}]

@tool
def insert_post(title: str) -> str:
    '''Saves a post title to the database and returns it.

    Args:
        title: the post title
    '''
    return "saved: " + title

turns = int(sys.argv[1])
out = {}
scripts = {
    "return": ["Thought: done.\n<code>\nfinal_answer('ok')\n</code>"],
    "code": ["Thought: compute.\n<code>\nx = 1 + 1\nprint(x)\n</code>",
             "Thought: done.\n<code>\nfinal_answer(x)\n</code>"],
}
for name, replies in scripts.items():
    agent = CodeAgent(tools=[fetch_posts, insert_post], model=Scripted(replies),
                      verbosity_level=0)
    agent.run("warm up")
    t = time.perf_counter()
    for _ in range(turns):
        agent.run("task", reset=True)
    out[name] = (time.perf_counter() - t) / turns
out["system_prompt"] = agent.system_prompt
print(json.dumps(out))
"""


class BenchAgent(legion.Agent):
    """Benchmark agent: fetch posts and save the good ones."""


def timed_turns(steps: list[dict[str, Any]], turns: int) -> float:
    """Seconds per turn on a long-lived agent, the model answering `steps` in a loop."""
    counter = [0]

    def answer(request: testing.Request) -> dict[str, Any]:
        step = steps[counter[0] % len(steps)]
        counter[0] += 1
        return step

    with testing.FunctionModel(answer):
        pid = legion.start_link(BenchAgent)
        try:
            legion.call(pid, "warm up")
            started = time.perf_counter()
            for _ in range(turns):
                legion.call(pid, "task")
            elapsed = time.perf_counter() - started
        finally:
            legion.stop(pid)
    return elapsed / turns


def timed_execute(turns: int, step: dict[str, Any] | None = None) -> float:
    with testing.FunctionModel(lambda r: step or testing.returns("ok")):
        legion.execute(BenchAgent, "warm up")
        started = time.perf_counter()
        for _ in range(turns):
            legion.execute(BenchAgent, "task")
        return (time.perf_counter() - started) / turns


def tokens(text: str) -> int:
    """Tokens for gpt-4o-mini, counted by litellm (its bundled tokenizer files, no network)."""
    from legion.llm import _import_litellm

    count: int = _import_litellm().token_counter(model="gpt-4o-mini", text=text)
    return count


def our_prompt() -> str:
    from research_agent import ResearchAgent

    from legion.prompt import system_prompt
    from legion.sandbox.guard import ALLOWED_MODULES
    from legion.tool import instantiate

    return system_prompt(
        ResearchAgent.role(),
        [instantiate(t, {}) for t in ResearchAgent.tools],
        action_types=ResearchAgent.action_types,
        binding_scope="turn",
        allowed_modules=ALLOWED_MODULES,
    )


def smolagents_figures(turns: int) -> dict[str, Any] | None:
    if shutil.which("uv") is None:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "smol_bench.py"  # smolagents' @tool reads its source from a file
        script.write_text(SMOLAGENTS)
        proc = subprocess.run(
            [
                "uv",
                "run",
                "--no-project",
                "--with",
                "smolagents",
                "python",
                str(script),
                str(turns),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp,
        )
    if proc.returncode != 0:
        print("smolagents baseline failed:", proc.stderr[-500:])
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ret = [testing.returns("ok")]
    code = [testing.eval_and_continue("x = 1 + 1\nprint(x)"), testing.returns("2")]
    rounds = [(timed_turns(ret, TURNS), timed_turns(code, TURNS)) for _ in range(3)]
    per_return = statistics.median(r[0] for r in rounds)
    per_code = statistics.median(r[1] for r in rounds)
    per_execute = timed_execute(max(10, TURNS // 5))
    per_execute_eval = timed_execute(max(10, TURNS // 10), testing.eval_and_complete("1 + 1"))
    smol = smolagents_figures(TURNS)
    ours_prompt = our_prompt()

    print(f"agent benchmark ({TURNS} turns per figure, median of 3 rounds; scripted model)")
    print()
    print(f"{'':48}{'legion':>14}{'smolagents':>14}")

    def row(label: str, ours: float, theirs: float | None, unit: str = "ms") -> None:
        scale = 1000 if unit == "ms" else 1
        other = f"{theirs * scale:>11.2f} {unit}" if theirs is not None else f"{'n/a':>14}"
        print(f"{label:48}{ours * scale:>11.2f} {unit}{other}")

    row("turn, 1 step (return), per turn", per_return, smol and smol["return"])
    row("turn, 2 steps (code + return), per turn", per_code, smol and smol["code"])
    row("overhead per step (code turn / 2)", per_code / 2, smol and smol["code"] / 2)
    print(
        f"{'turns per second, 1 step':48}{1 / per_return:>11.0f} /s"
        + (f"{1 / smol['return']:>12.0f} /s" if smol else "")
    )
    print(
        f"{'turns per second, 2 steps (one sandbox eval)':48}{1 / per_code:>11.0f} /s"
        + (f"{1 / smol['code']:>12.0f} /s" if smol else "")
    )
    row("execute(): spawn agent + 1-step turn + stop", per_execute, None)
    row("execute() with a code step", per_execute_eval, None)
    ours_tokens = tokens(ours_prompt)
    theirs_tokens = tokens(smol["system_prompt"]) if smol else None
    print(
        f"{'system prompt, 2 tools (gpt-4o-mini tokens)':48}{ours_tokens:>14}"
        + (f"{theirs_tokens:>14}" if theirs_tokens else "")
    )
    print()
    print("legion: every step is a model request from the agent process to this one (runtime")
    print("call), and every code step a fresh forked, seccomp'd sandbox child; smolagents runs")
    print("the model and the code in this one process (no isolation). Agent processes share")
    print("the node's sandbox zygote (forked from the agent zygote), so a new agent's first")
    print("evaluation costs no zygote start.")
    legion.shutdown()


if __name__ == "__main__":
    main()
