"""`legion run` (offline demo) and the litellm adapter (with litellm's own mock responses)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from legion import llm
from legion.run import has_key, main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_legion_run_offline_demo_shows_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = io.StringIO()
    task = "Find cool posts about Advent of Code and save them"
    assert main([f"{EXAMPLES / 'research_agent.py'}:ResearchAgent", task], out=out) == 0
    text = out.getvalue()
    assert text.startswith("*** OFFLINE DEMO")
    assert "── step 1 · eval_and_continue ──" in text
    assert "ScraperTool.fetch_posts()" in text
    assert "saved: Advent of Code 2024 in Python" in text
    assert text.rstrip().endswith("at least 50 points.'")


def test_legion_run_generic_demo_for_any_agent() -> None:
    out = io.StringIO()
    assert main(["agents_for_tests:MathAgent", "add two numbers", "--offline"], out=out) == 0
    assert "(offline demo)" in out.getvalue()
    assert "task has 3 words" in out.getvalue()


def test_key_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert not has_key("anthropic:claude-sonnet-4-20250514")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    assert has_key("anthropic/claude-sonnet-4-20250514")
    assert has_key("ollama/llama3")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("openai:gpt-4o-mini", "openai/gpt-4o-mini"),
        ("anthropic/claude-3-5-sonnet", "anthropic/claude-3-5-sonnet"),
        ("ollama/llama3:8b", "ollama/llama3:8b"),
    ],
)
def test_provider_model_forms(given: str, expected: str) -> None:
    assert llm.to_litellm(given) == expected


@pytest.mark.slow  # imports litellm in the test process (seconds)
def test_litellm_adapter_extracts_the_object_and_records_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    litellm = llm._import_litellm()  # sets the local price map before importing

    action = {"action": "return", "code": "", "result": "hi"}
    seen: dict[str, Any] = {}

    class Mocked:
        suppress_debug_info = False
        completion_cost = staticmethod(litellm.completion_cost)

        @staticmethod
        def completion(**kwargs: Any) -> Any:
            seen.update(kwargs)
            return litellm.completion(**kwargs, mock_response=json.dumps(action))

    monkeypatch.setattr(llm, "_import_litellm", lambda: Mocked)
    messages = [{"role": "user", "content": "hello"}]
    schema = {"type": "object"}
    obj, usage = trio.run(
        lambda: llm.generate_object("openai:gpt-4o-mini", messages, schema, timeout=7.0)
    )
    assert obj == action
    assert seen["model"] == "openai/gpt-4o-mini" and seen["timeout"] == 7.0
    assert seen["response_format"]["json_schema"]["schema"] == schema
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.cost is None or usage.cost >= 0


def test_litellm_errors_become_llm_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing:
        @staticmethod
        def completion(**kwargs: Any) -> Any:
            raise ConnectionError("connection refused")

    monkeypatch.setattr(llm, "_import_litellm", lambda: Failing)
    with pytest.raises(llm.LLMError, match="connection refused"):
        trio.run(lambda: llm.generate_object("openai:x", [], {}, timeout=1.0))


def test_real_calls_are_blocked_in_the_agent_process_too() -> None:
    with pytest.raises(llm.RealModelBlocked):
        trio.run(lambda: llm.generate_object("openai:x", [], {}, timeout=1.0, block_real=True))


def test_strict_mode_only_when_every_property_is_required() -> None:
    from legion.prompt import action_schema

    assert llm.strict_compatible(action_schema(["return"], None))
    optional = {"type": "object", "properties": {"a": {"type": "string"}}, "required": []}
    assert not llm.strict_compatible(action_schema(["return"], optional))


def test_the_action_object_is_read_from_content_or_a_structured_output_tool_call() -> None:
    from types import SimpleNamespace as NS

    from legion.llm import LLMError, _extract

    def response(message: object) -> object:
        return NS(choices=[NS(message=message)])

    action = {"action": "return", "code": "", "result": 1}
    as_content = NS(content=json.dumps(action), tool_calls=None)
    assert _extract(response(as_content)) == action
    call = NS(function=NS(name="structured_output", arguments=json.dumps(action)))
    as_tool_call = NS(
        content=None, tool_calls=[NS(function=NS(name="other", arguments="{}")), call]
    )
    assert _extract(response(as_tool_call)) == action
    with pytest.raises(LLMError, match="no structured object"):
        _extract(response(NS(content=None, tool_calls=[])))
    with pytest.raises(LLMError, match="not valid JSON"):
        _extract(response(NS(content="{not json", tool_calls=None)))
    odd_call = NS(function=NS(name="structured_output", arguments=None))
    with pytest.raises(LLMError, match="LLM tool call is not JSON text but NoneType"):
        _extract(response(NS(content=None, tool_calls=[odd_call])))
    with pytest.raises(LLMError, match="no structured object"):
        _extract(NS(choices=None))


BAD_AGENTS = '''
import legion


class Forever(legion.Agent):
    """Keeps its variables forever."""

    config = {"binding_scope": "forever"}


class Fine(legion.Agent):
    """Does nothing wrong."""
'''


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["agents.py:Forever"],
            "legion run: Forever: binding_scope must be one of 'iteration', 'turn', "
            "'conversation', got 'forever'",
        ),
        (
            ["agents.py:Fine", "--max-iterations", "0"],
            "legion run: Fine: max_iterations must be a positive int, got 0",
        ),
        (
            ["broken.py:Agent"],
            "legion run: cannot import broken: ZeroDivisionError: division by zero (at {dir}/"
            "broken.py:2)",
        ),
    ],
    ids=["config error", "bad option", "module that raises"],
)
def test_legion_run_reports_bad_input_as_one_line(
    tmp_path: Path, args: list[str], line: str
) -> None:
    (tmp_path / "agents.py").write_text(BAD_AGENTS)
    (tmp_path / "broken.py").write_text("import legion\nx = 1 / 0\n")
    done = subprocess.run(
        [sys.executable, "-m", "legion", "run", *args, "a task"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr.splitlines() == [line.format(dir=tmp_path)]
    assert done.stdout == ""


CANCELLING_AGENT = '''
import legion
from legion import testing

DEMO_STEPS = [testing.llm_error("litellm.AuthenticationError: bad key", retryable=False)]


class Refused(legion.Agent):
    """Meets a provider that refuses its key."""
'''


def test_legion_run_shows_why_a_turn_was_cancelled(tmp_path: Path) -> None:
    (tmp_path / "refused_agent.py").write_text(CANCELLING_AGENT)
    out = io.StringIO()
    assert main([f"{tmp_path / 'refused_agent.py'}:Refused", "x", "--offline"], out=out) == 1
    assert out.getvalue().endswith(
        "Cancelled: provider_error\n  last error: litellm.AuthenticationError: bad key\n"
    )


@pytest.mark.parametrize(
    ("model", "line"),
    [
        ("nonsense", "legion run: model 'nonsense' names no provider litellm knows; write "),
        (
            "opnai:gpt-4o-mini",
            "legion run: unknown provider 'opnai' in model 'opnai:gpt-4o-mini' (did you mean "
            "'openai'?); write provider:model, e.g. 'openai:gpt-4o-mini' (providers include "
            "openai, anthropic,",
        ),
        ("foo/bar", "legion run: unknown provider 'foo' in model 'foo/bar'; write "),
        ("openai:", "legion run: model 'openai:' names the provider 'openai' but no model after"),
    ],
    ids=["no provider", "misspelt provider", "unknown provider", "no model"],
)
def test_legion_run_names_a_wrong_model_string_even_with_a_key_set(
    tmp_path: Path, model: str, line: str
) -> None:
    """A key is set, so "no API key" would be a lie: the model string is what is wrong."""
    (tmp_path / "agents.py").write_text(BAD_AGENTS)
    done = subprocess.run(
        [sys.executable, "-m", "legion", "run", "agents.py:Fine", "a task", "--model", model],
        cwd=tmp_path,
        env={**os.environ, "OPENAI_API_KEY": "sk-test"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(line), done.stderr
    assert done.stdout == ""  # no offline demo


def test_a_valid_bare_model_name_without_a_key_runs_the_demo(tmp_path: Path) -> None:
    """litellm routes `gpt-4o-mini` to openai: its key is looked for, and missing."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "legion", "run", "agents_for_tests:MathAgent", "add", "--model",
         "gpt-4o-mini"],
        cwd=Path(__file__).parent, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("*** OFFLINE DEMO: no API key for 'gpt-4o-mini' was found")


def test_the_providers_known_without_litellm_are_litellm_providers() -> None:
    litellm = llm._import_litellm()
    known = {str(getattr(p, "value", p)) for p in litellm.provider_list}
    assert llm.COMMON_PROVIDERS.issubset(known)
    for provider in sorted(llm.COMMON_PROVIDERS):  # litellm routes them as the fast path does
        assert llm.provider_of(f"{provider}:some-model") == provider
        assert litellm.get_llm_provider(f"{provider}/some-model")[1] == provider
