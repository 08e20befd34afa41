"""Vault: context reaches the agent, its tools and sub-agents; never the parent or the sandbox."""

from __future__ import annotations

import pytest
from agents_for_tests import MathAgent, OrchestratorAgent

import legion
from legion import testing
from legion.testing import eval_and_complete, eval_and_continue, returns


def test_init_get_put() -> None:
    legion.vault.init("current_user", {"id": 7})
    assert legion.vault.get("current_user") == {"id": 7}
    assert legion.vault.get("missing", "dflt") == "dflt"
    with pytest.raises(legion.vault.VaultError):
        legion.vault.init("current_user", {"id": 8})
    legion.vault.put("current_user", {"id": 8})
    assert legion.vault.get("current_user") == {"id": 8}


def test_context_reaches_the_agents_tools() -> None:
    legion.vault.init("current_user", {"id": 42})
    with testing.ScriptedModel([eval_and_complete("MathTool.whoami()")]):
        assert legion.execute(MathAgent, "who am I?") == {"id": 42}


def test_generated_code_cannot_read_the_vault() -> None:
    """Even code that escapes the guard (a real bypass, as in the sandbox tests) finds nothing:
    the sandbox child is forked from a clean zygote and never given the Vault."""
    secret = "vault-secret-s3cr3t"
    legion.vault.init("token", secret)
    escape = (
        "import string, random\n"
        "os = string.Formatter().get_field('0.__globals__[_os]', [random.shuffle], {})[0]\n"
        "needle = 'vault-' + 'secret-s3cr3t'\n"
        "hits = ['environ'] if needle in repr(dict(os.environ)) else []\n"
        "for name, module in list(os.sys.modules.items()):\n"
        "    d = string.Formatter().get_field('0.__dict__', [module], {})[0]\n"
        "    if d.get('needle') is not needle and needle in repr(d):\n"
        "        hits.append(name)\n"
        "hits"
    )
    steps = [
        eval_and_continue("import legion"),
        eval_and_continue("MathTool.whoami"),
        eval_and_continue(escape),
        returns("done"),
    ]
    with testing.ScriptedModel(steps) as model:
        legion.execute(MathAgent, "try to read the vault")
    assert "Code execution failed" in model.requests[1].last  # no legion in the sandbox
    assert model.requests[3].last.startswith("Code executed successfully. Result:\n```\n[]\n")
    for request in model.requests:
        assert all(secret not in str(m["content"]) for m in request.messages)


def test_context_reaches_sub_agents_and_child_writes_stay_there() -> None:
    legion.vault.init("current_user", {"id": 5})

    def model_fn(request: testing.Request) -> dict[str, object]:
        if request.agent == "OrchestratorAgent" and len(request.messages) == 2:
            return eval_and_complete("AgentTool.call('WorkerAgent', 'who?')")
        return eval_and_complete("MathTool.whoami()")

    # WorkerAgent has no MathTool: its code fails and it retries until cancelled, so give it
    # a tool-free answer instead when the orchestrator asks it.
    def routed(request: testing.Request) -> dict[str, object]:
        if request.agent == "WorkerAgent":
            return returns("worker ran")
        return model_fn(request)

    with testing.FunctionModel(routed):
        assert legion.execute(OrchestratorAgent, "delegate") == "worker ran"
    assert legion.vault.get("current_user") == {"id": 5}


def test_a_put_in_a_sync_tool_is_seen_by_later_calls_and_never_reaches_the_starter() -> None:
    from agents_for_tests import NotesAgent

    steps = [
        eval_and_continue("NotesTool.remember('mood', 'curious')"),
        eval_and_complete("NotesTool.recall('mood')"),
    ]
    with testing.ScriptedModel(steps):
        assert legion.execute(NotesAgent, "take a note, then read it") == "curious"
    assert legion.vault.get("mood") is None


def test_a_sub_agent_inherits_the_vault_and_its_writes_stay_in_it() -> None:
    from agents_for_tests import NotesOrchestrator

    legion.vault.init("current_user", {"id": 5})
    orchestrator_code = (
        "seen = AgentTool.call('NotesAgent', 'who is the user?')\n"
        "[seen, NotesTool.recall('mood'), NotesTool.recall('current_user')]"
    )
    sub_agent_code = "NotesTool.remember('mood', 'busy')\nNotesTool.recall('current_user')"

    def answer(request: testing.Request) -> dict[str, object]:
        if request.agent == "NotesAgent":
            return eval_and_complete(sub_agent_code)
        return eval_and_complete(orchestrator_code)

    with testing.FunctionModel(answer):
        seen, mood_in_parent, user_in_parent = legion.execute(NotesOrchestrator, "delegate")
    assert seen == {"id": 5}  # the sub-agent read the context its parent inherited
    assert mood_in_parent is None  # the sub-agent's write did not reach its parent
    assert user_in_parent == {"id": 5}
    assert legion.vault.get("mood") is None
