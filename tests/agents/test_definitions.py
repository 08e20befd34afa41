"""Defining agents and tools, and the prompt built from them (§10 "Prompt", "Agent macro")."""

from __future__ import annotations

import platform

import msgspec
import pytest
from agents_for_tests import (
    DescribedTool,
    MathAgent,
    MathTool,
    NoToolAgent,
    SecretTool,
    ShadowedAgent,
)

import legion
from legion import testing
from legion.prompt import system_prompt
from legion.testing import done
from legion.tool import describe


def _prompt(tools: list[object], scope: str = "turn") -> str:
    return system_prompt("My role.", tools, action_types=["return", "done"], binding_scope=scope)


def test_an_agent_without_a_docstring_is_refused() -> None:
    with pytest.raises(TypeError, match="must define a docstring"):

        class Nameless(legion.Agent):
            pass

    with pytest.raises(TypeError, match="must define a docstring"):

        class Blank(legion.Agent):
            """ """


def test_bad_action_types_are_refused() -> None:
    with pytest.raises(TypeError, match="action_types"):

        class Bad(legion.Agent):
            """Role."""

            action_types = ("fly",)


def test_agent_defaults() -> None:
    assert NoToolAgent.tools == ()
    assert NoToolAgent.output_schema is None
    assert NoToolAgent.config == {}
    assert NoToolAgent.system_prompt is None
    assert NoToolAgent().tool_config(MathTool) == {}
    assert NoToolAgent.role() == "Answers questions without tools."


def test_prompt_has_role_python_version_and_is_trimmed() -> None:
    prompt = _prompt([])
    assert "My role." in prompt
    assert platform.python_version() in prompt
    assert prompt == prompt.strip()
    assert "## Available Tools" not in prompt
    assert '"return", "done"' in prompt


def test_prompt_describes_tools_by_signature_and_docstring_not_source() -> None:
    prompt = _prompt([MathTool()])
    assert "## Available Tools" in prompt and "### MathTool" in prompt
    assert "def add(a: int, b: int) -> int:" in prompt
    assert '"""Adds two numbers."""' in prompt
    assert "_private_helper" not in prompt and "SECRET_IN_HELPER" not in prompt
    assert "return a + b" not in prompt


def test_prompt_never_contains_secrets_from_the_tool_source() -> None:
    assert "sk-very-secret-123" not in _prompt([SecretTool()])


def test_an_instance_attribute_never_shadows_or_adds_a_tool_method() -> None:
    steps = [
        testing.eval_and_continue("ShadowedTool.lookup('k')"),
        testing.eval_and_complete("ShadowedTool.backdoor()"),
        done(),
    ]
    with testing.ScriptedModel(steps) as model:
        pid = legion.start_link(ShadowedAgent)
        try:
            legion.call(pid, "look it up")
            prompt = legion.get_messages(pid)[0]["content"]
        finally:
            legion.stop(pid)
    assert "'method:k'" in model.requests[1].last  # the class's method ran, bound to the tool
    assert "instance attribute" not in model.requests[1].last
    assert "backdoor" in model.requests[2].last and "a callable attribute" not in str(
        model.requests[2].last
    )
    assert "def lookup(key: str) -> str:" in prompt and "backdoor" not in prompt


def test_description_override_replaces_the_generated_text() -> None:
    text = describe(DescribedTool())
    assert text == "A hand-written description of DescribedTool."
    assert "Source docstring" not in _prompt([DescribedTool()])


def test_a_third_party_module_is_described_by_its_functions() -> None:
    prompt = _prompt([msgspec.json])
    assert "### json" in prompt and "def encode" in prompt


@pytest.mark.parametrize(
    ("scope", "text"),
    [
        ("iteration", "Variables do not persist."),
        ("turn", "Variables persist"),
        ("conversation", "also across tasks"),
    ],
)
def test_prompt_variable_lifetime_follows_the_scope(scope: str, text: str) -> None:
    assert text in _prompt([], scope)


def test_tool_config_reaches_the_tool_and_the_agent_prompt_lists_it() -> None:
    with testing.ScriptedModel([done()]) as model:
        legion.execute(MathAgent, "x")
    assert "### MathTool" in model.requests[0].system


def test_two_tools_with_one_short_name_are_refused_at_start() -> None:
    from legion.tool import check_names

    class MathToolCopy(legion.Tool):
        pass

    MathToolCopy.__name__ = "MathTool"
    with pytest.raises(ValueError, match="share the short name"):
        check_names([MathTool, MathToolCopy])
    with pytest.raises(ValueError, match="shadow the builtin"):
        check_names([type("print", (legion.Tool,), {})])


def test_import_legion_does_not_import_litellm() -> None:
    import subprocess
    import sys

    code = "import legion, sys; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unusable_output_schema_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="not a valid JSON schema"):

        class BadSchema(legion.Agent):
            """Role."""

            output_schema = {"type": "no-such-type"}

    with pytest.raises(TypeError, match="msgspec can describe"):

        class BadType(legion.Agent):
            """Role."""

            output_schema = object


def test_signature_defaults_that_may_hold_secrets_stay_out_of_the_prompt() -> None:
    class KeyedTool(legion.Tool):
        """Calls a service."""

        def query(
            self, q: str, api_key: str = "sk-live-0123456789", retries: int = 3, strict: bool = True
        ) -> str:
            """Queries the service."""
            return q

    text = describe(KeyedTool)
    assert "sk-live" not in text
    assert "api_key: str = ..." in text
    assert "retries: int = 3" in text and "strict: bool = True" in text


def test_prompt_sections_come_in_legions_order() -> None:
    """legion.md §3.5: how you work, prefer code, variable lifetime, constraints, role, tools."""
    prompt = _prompt([MathTool()])
    markers = [
        "## How you work",
        "**Prefer writing code",
        "**Variables persist**",
        "**Constraints:**",
        "## Who you are",
        "My role.",
        "## Available Tools",
        "### MathTool",
    ]
    positions = [prompt.index(marker) for marker in markers]
    assert positions == sorted(positions)
    assert "## Available Tools" not in _prompt([])
