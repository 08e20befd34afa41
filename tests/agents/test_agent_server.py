"""Agents as processes (§10 "AgentServer"): history, config, messages, cast, names, scopes."""

from __future__ import annotations

import math

import pytest
from agents_for_tests import (
    ConfiguredAgent,
    ConversationAgent,
    CustomPromptAgent,
    NoToolAgent,
)

import legion
from legion import testing
from legion.testing import done, eval_and_complete, eval_and_continue, returns


def test_get_messages_after_one_call() -> None:
    with testing.ScriptedModel([returns("hi")]):
        pid = legion.start_link(NoToolAgent)
        try:
            assert legion.call(pid, "hello") == "hi"
            messages = legion.get_messages(pid)
        finally:
            legion.stop(pid)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"] == "hello"


def test_unknown_config_key_warns() -> None:
    with (
        testing.ScriptedModel([done()]),
        pytest.warns(UserWarning, match=r"Unknown Legion config keys: \['bogus_key'\]"),
    ):
        legion.execute(NoToolAgent, "x", bogus_key=1)


def test_config_precedence_start_option_over_agent_over_global() -> None:
    with testing.FunctionModel(lambda r: done()) as model:
        try:
            legion.configure(model="openai:from-configure")
            legion.execute(NoToolAgent, "x")
            legion.execute(ConfiguredAgent, "x")
            legion.execute(ConfiguredAgent, "x", model="openai:from-option")
        finally:
            legion.config._GLOBAL.clear()
    assert [r.model for r in model.requests] == [
        "openai:from-configure",
        "anthropic:claude-agent-config",
        "openai:from-option",
    ]


def test_default_model() -> None:
    with testing.ScriptedModel([done()]) as model:
        legion.execute(NoToolAgent, "x")
    assert model.requests[0].model == "openai:gpt-4o-mini"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_message_length", None),
        ("max_message_length", 0),
        ("max_message_length", -5),
        ("max_iterations", 0),
        ("binding_scope", "forever"),
        ("sandbox_timeout", -1),
        ("model", ""),
        ("llm_backoff", -1),
        ("llm_backoff", 600),
        ("llm_options", "api_base=x"),
        ("max_sub_agents", 0),
        ("max_sub_agents_per_turn", 0),
    ],
)
def test_invalid_values_raise_at_start_with_the_allowed_values(key: str, value: object) -> None:
    with pytest.raises(legion.ConfigError, match=key):
        legion.start_link(NoToolAgent, **{key: value})


def test_llm_options_may_not_override_what_legion_sets() -> None:
    with pytest.raises(legion.ConfigError, match=r"llm_options may not set \['max_retries'\]"):
        legion.start_link(NoToolAgent, llm_options={"api_base": "x", "max_retries": 5})


def test_invalid_binding_scope_names_the_allowed_values() -> None:
    with pytest.raises(legion.ConfigError, match="'iteration', 'turn', 'conversation'"):
        legion.execute(NoToolAgent, "x", binding_scope="bogus")


@pytest.mark.parametrize(
    "task",
    [
        ("image", b"\x89PNG fake", "image/png"),
        ("image_url", "https://example.com/a.png"),
        ("multipart", [{"type": "text", "text": "what is this?"}]),
        ("multipart", []),
    ],
)
def test_images_and_multipart_reach_the_model(task: tuple[object, ...]) -> None:
    with testing.ScriptedModel([done()]) as model:
        legion.execute(NoToolAgent, task, max_message_length=10)
    content = model.requests[0].messages[1]["content"]
    assert isinstance(content, list)
    if task[0] == "multipart":
        assert content == task[1]
    else:
        assert len(content) == 1 and content[0]["type"] == "image_url"


def test_non_text_tasks_arrive_as_repr_and_a_pid_does_not_crash() -> None:
    with testing.ScriptedModel([done(), done()]) as model:
        legion.execute(NoToolAgent, {"a": 1})
        legion.execute(NoToolAgent, {"who": legion.self()})
    assert model.requests[0].messages[1]["content"] == "{'a': 1}"
    assert "<Pid" in model.requests[1].messages[1]["content"]


def test_max_message_length_truncates_input_exactly() -> None:
    with testing.ScriptedModel([done(), done(), done()]) as model:
        legion.execute(NoToolAgent, "a" * 5000, max_message_length=100)
        legion.execute(NoToolAgent, "short", max_message_length=100)
        legion.execute(NoToolAgent, "b" * 25000)
    assert model.requests[0].messages[1]["content"].endswith("[... truncated 4900 bytes ...]")
    assert model.requests[1].messages[1]["content"] == "short"
    assert model.requests[2].messages[1]["content"].endswith("[... truncated 5000 bytes ...]")


def test_truncation_never_splits_a_utf8_character() -> None:
    with testing.ScriptedModel([done()]) as model:
        legion.execute(NoToolAgent, "é" * 100, max_message_length=51)
    content = model.requests[0].messages[1]["content"]
    assert content.startswith("é" * 25 + "\n\n")
    assert content.endswith("[... truncated 150 bytes ...]")


def test_infinite_max_message_length_disables_truncation() -> None:
    with testing.ScriptedModel([done()]) as model:
        legion.execute(NoToolAgent, "c" * 30000, max_message_length=math.inf)
    assert model.requests[0].messages[1]["content"] == "c" * 30000


def test_cast_updates_the_history() -> None:
    with testing.ScriptedModel([returns("first"), returns("second")]):
        pid = legion.start_link(NoToolAgent)
        try:
            assert legion.cast(pid, "fire and forget") is None
            assert legion.call(pid, "then ask") == "second"  # turns are serialised
            contents = [m["content"] for m in legion.get_messages(pid)]
        finally:
            legion.stop(pid)
    assert contents[1] == "fire and forget" and contents[3] == "then ask"


def test_start_link_with_a_first_task_and_a_name() -> None:
    with testing.ScriptedModel([returns("started"), returns("named")]) as model:
        pid = legion.start_link(NoToolAgent, "first task", name="named-agent")
        try:
            assert legion.call("named-agent", "second") == "named"
        finally:
            legion.stop(pid)
    assert model.requests[0].messages[1]["content"] == "first task"


def test_turn_scope_forgets_variables_across_turns() -> None:
    steps = [eval_and_complete("x = 42\nx")] + [eval_and_continue("x + 1")] * 4
    with testing.ScriptedModel(steps):
        pid = legion.start_link(NoToolAgent)
        try:
            assert legion.call(pid, "set") == 42
            with pytest.raises(legion.AgentCancelled, match="reached_max_retries"):
                legion.call(pid, "use")
        finally:
            legion.stop(pid)


def test_conversation_scope_keeps_variables_across_turns() -> None:
    with testing.ScriptedModel([eval_and_complete("x = 42\nx"), eval_and_complete("x + 1")]):
        pid = legion.start_link(ConversationAgent)
        try:
            assert legion.call(pid, "set") == 42
            assert legion.call(pid, "use") == 43
        finally:
            legion.stop(pid)


def test_share_bindings_true_means_conversation() -> None:
    with testing.ScriptedModel([eval_and_complete("x = 1\nx"), eval_and_complete("x + 1")]) as m:
        pid = legion.start_link(NoToolAgent, share_bindings=True)
        try:
            legion.call(pid, "a")
            assert legion.call(pid, "b") == 2
        finally:
            legion.stop(pid)
    assert "also across tasks" in m.requests[0].system


def test_scope_from_configure_shapes_the_prompt() -> None:
    legion.configure(binding_scope="iteration")
    try:
        with testing.ScriptedModel([done()]) as model:
            legion.execute(NoToolAgent, "x")
    finally:
        legion.config._GLOBAL.clear()
    assert "Variables do not persist." in model.requests[0].system


def test_custom_system_prompt_is_used_verbatim() -> None:
    with testing.ScriptedModel([done()]) as model:
        legion.execute(CustomPromptAgent, "x")
    assert model.requests[0].system == "You are a custom prompt. Answer briefly."
    assert model.requests[0].schema["required"] == ["action", "code", "result"]


def test_history_is_kept_on_cancel() -> None:
    with testing.FunctionModel(lambda r: eval_and_continue("1/0")):
        pid = legion.start_link(NoToolAgent)
        try:
            with pytest.raises(legion.AgentCancelled):
                legion.call(pid, "doomed")
            messages = legion.get_messages(pid)
        finally:
            legion.stop(pid)
    # system, user, then 4 assistant answers with 3 feedback messages between them
    assert len(messages) == 2 + 4 + 3


def test_get_messages_answers_during_a_turn() -> None:
    import threading

    release, started = threading.Event(), threading.Event()

    def slow(request: testing.Request) -> dict[str, object]:
        started.set()
        release.wait(10)
        return returns("late")

    with testing.FunctionModel(slow):
        pid = legion.start_link(NoToolAgent)
        try:
            legion.cast(pid, "a long turn")
            assert started.wait(10)
            assert legion.get_messages(pid)[-1]["content"] == "a long turn"
            release.set()
            assert legion.call(pid, "next") == "late"
        finally:
            release.set()
            legion.stop(pid)


def test_usage_is_recorded_per_request() -> None:
    with testing.ScriptedModel([eval_and_continue("1"), done()]):
        pid = legion.start_link(NoToolAgent)
        try:
            legion.call(pid, "x")
            usage = legion.get_usage(pid)
        finally:
            legion.stop(pid)
    assert len(usage) == 2 and usage[0]["model"] == "openai:gpt-4o-mini"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_awaitable_twins_under_trio_and_asyncio(anyio_backend: str) -> None:
    with testing.ScriptedModel([eval_and_complete("6 * 7"), returns("again")]):
        assert await legion.aexecute(NoToolAgent, "x") == 42
        pid = await legion.astart_link(NoToolAgent)
        try:
            assert await legion.acall(pid, "y") == "again"
        finally:
            await legion.astop(pid)


def test_a_slow_sync_tool_does_not_block_the_agent() -> None:
    from agents_for_tests import MathAgent

    from legion.supervisor.terms import CallRequest

    legion.vault.put("app", legion.self())
    steps = [eval_and_continue("MathTool.ask_app()"), returns("first"), returns("second")]
    with testing.ScriptedModel(steps) as model:
        pid = legion.start_link(MathAgent)
        try:
            legion.cast(pid, "go")
            request = legion.receive(
                timeout=30, match=lambda m: isinstance(m, CallRequest) and m.request == "may I go?"
            )
            # the tool is blocked in its thread; the agent still answers
            assert "MathTool.ask_app()" in legion.get_messages(pid)[-1]["content"]
            legion.reply(request.from_, "go on")
            assert legion.call(pid, "next") == "second"
        finally:
            legion.stop(pid)
    assert "'go on'" in model.requests[1].last


def test_child_spec_puts_an_agent_in_a_supervision_tree() -> None:
    import threading

    boots: list[threading.Event] = [threading.Event(), threading.Event()]

    def answer(request: testing.Request) -> dict[str, object]:
        content = request.messages[-1]["content"]
        if content == "boot":
            boots[0].set() if not boots[0].is_set() else boots[1].set()
            return done()
        return returns(f"supervised:{content}")

    with testing.FunctionModel(answer):  # active when the spec is made: the spec carries it
        spec = NoToolAgent.child_spec("boot", name="supervised-agent", max_iterations=2)
        assert spec.restart == "transient" and spec.id == "NoToolAgent"
        sup = legion.start_link(legion.Supervisor, legion.SupervisorSpec(children=[spec]))
        try:
            assert boots[0].wait(10)
            assert legion.call("supervised-agent", "hi") == "supervised:hi"
            legion.exit(legion.whereis("supervised-agent"), "kill")
            assert boots[1].wait(10)  # restarted, and ran its first task again
        finally:
            legion.stop(sup)


def test_process_groups_are_joined_at_start() -> None:
    from agents_for_tests import PooledAgent

    with testing.ScriptedModel([]):
        pid = legion.start_link(PooledAgent)
        try:
            assert pid in legion.pg.get_members(("agents-pool", "test"))
        finally:
            legion.stop(pid)


def test_an_agent_turn_lifts_the_default_call_timeout() -> None:
    import time

    from legion.supervisor import api, client

    def slow(request: testing.Request) -> dict[str, object]:
        time.sleep(0.3)  # a slow model: longer than the caller's timeout below
        return returns("late but fine")

    with testing.FunctionModel(slow):
        pid = legion.start_link(NoToolAgent)
        assert pid is not None
        assert api.unwrap_reply(client.get().call(pid, "hi", 0.05, extendable=True)) == (
            "late but fine"
        )
        legion.stop(pid)
