"""The sandbox as an agent process uses it: bad values end an evaluation with an error fed back
to the model, never the agent (issue 11 §2, §3, §6; issue 17 §4, §5)."""

from __future__ import annotations

import pytest
from sandbox_agents import SandboxAgent

import legion
from legion import testing
from legion.testing import eval_and_complete, eval_and_continue, returns

DEEP = "w = []\nfor _ in range(985):\n    w = [w]\n"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (DEEP + "w", "the value of the last expression is nested too deeply to return"),
        (DEEP + "AwkwardTool.echo(w)", "arguments of AwkwardTool.echo are nested too deeply"),
        ("AwkwardTool.deep()", "AwkwardTool.deep returned a value nested too deeply"),
        ("10 ** 5000", "the value of the last expression cannot be shown: ValueError"),
        ("AwkwardTool.helper()", "tool AwkwardTool has no function 'helper' (only methods"),
        ("AwkwardTool.exits()", "ToolError: SystemExit: 2"),
        ("AwkwardTool.interrupted()", "ToolError: KeyboardInterrupt"),
    ],
)
def test_a_bad_value_is_fed_back_and_the_agent_lives_on(code: str, message: str) -> None:
    steps = [eval_and_complete(code), returns("recovered"), returns("still here")]
    with testing.ScriptedModel(steps) as model:
        pid = legion.start_link(SandboxAgent)
        try:
            assert legion.call(pid, "go", timeout=60) == "recovered"
            assert legion.call(pid, "again", timeout=60) == "still here"
        finally:
            legion.stop(pid)
    feedback = model.requests[1].messages[-1]["content"]
    assert feedback.startswith("Code execution failed") and message in feedback


def test_dropped_variables_are_named_with_the_reason_and_not_listed() -> None:
    code = (
        "import enum\nclass E(enum.Enum):\n    A = 1\n"
        "gen = (i for i in range(3))\nsq = lambda v: v * v"
    )
    steps = [
        eval_and_continue(code),
        eval_and_continue("e = E.A"),
        eval_and_complete("(e.name, sq(7))"),
    ]
    with testing.ScriptedModel(steps) as model:
        pid = legion.start_link(SandboxAgent)
        try:
            assert legion.call(pid, "go", timeout=60) == ["A", 49]
        finally:
            legion.stop(pid)
    first = model.requests[1].messages[-1]["content"]
    assert "Available variables: `enum`, `E`, `sq`" in first
    assert "Not kept for the next step: `gen`: a generator cannot be saved" in first
    assert "Not kept" not in model.requests[2].messages[-1]["content"]


def test_the_agent_keeps_its_own_definitions_across_turns() -> None:
    define = (
        "import dataclasses, functools\n@dataclasses.dataclass\nclass P:\n    x: int\n"
        "@functools.lru_cache\ndef twice(n):\n    return 2 * n\n_scale = 3\np = P(7)\nP.__name__"
    )
    steps = [eval_and_complete(define), eval_and_complete("twice(p.x) * _scale")]
    with testing.ScriptedModel(steps):
        pid = legion.start_link(SandboxAgent)
        try:
            assert legion.call(pid, "define", timeout=60) == "P"
            assert legion.call(pid, "use", timeout=60) == 42
        finally:
            legion.stop(pid)


def test_sandbox_modules_extend_the_allowlist_and_reach_the_prompt() -> None:
    code = "import hashlib\nhashlib.md5(b'').hexdigest()[:6]"
    with testing.ScriptedModel([eval_and_complete(code)]) as model:
        pid = legion.start_link(SandboxAgent, sandbox_modules=["hashlib"])
        try:
            assert legion.call(pid, "hash", timeout=60) == "d41d8c"
        finally:
            legion.stop(pid)
    assert "hashlib" in model.requests[0].system


def test_a_module_that_cannot_be_preloaded_is_a_config_error_at_start() -> None:
    with pytest.raises(legion.ConfigError, match="module 'numpy' cannot be added to the sandbox"):
        legion.start_link(SandboxAgent, sandbox_modules=["numpy"])
