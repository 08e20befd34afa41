"""HumanTool: generated code asks a person a question and the turn waits for the answer.

`HumanTool.ask(question)` records a pending question in the agent, tells the handler (the
`handler` in `tool_config`, default: the process that started the agent) with a message
``{"type": "legion.human_question", "agent": pid, "run_id": ..., "question_id": ..., "question":
...}``, and waits until `legion.respond(agent_pid, answer)` answers it, or until its own `timeout`
(seconds, `tool_config`, default none; the sandbox timeout still applies, so raise it for long
waits). The application can also list questions with `legion.pending_questions(pid)`.

Unlike Legion v0.3, asking under `eval_and_complete` is refused: the answer would become the
turn's result without the model ever seeing it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from legion.sandbox.proxy import untimed
from legion.tool import Tool


class HumanTool(Tool):
    """Ask a human for input. Use with eval_and_continue so you can read the answer."""

    @untimed  # a person's answer does not count against sandbox_timeout (Legion's hole 6a)
    async def ask(self, question: str) -> str:
        """Asks the human `question` and returns their answer (blocks until they answer)."""
        import trio

        from legion import agent as agent_module
        from legion.loop import CURRENT_ACTION
        from legion.supervisor import api

        if not isinstance(question, str):
            raise TypeError("HumanTool.ask takes the question as a str")
        if CURRENT_ACTION.get() == "eval_and_complete":
            raise RuntimeError(
                "HumanTool.ask cannot be used with eval_and_complete: use eval_and_continue so "
                "you can read the answer"
            )
        agent = agent_module.current()
        if agent is None:
            raise RuntimeError("HumanTool.ask runs only inside an agent")
        question_id = uuid.uuid4().hex
        event = trio.Event()
        info = {
            "type": "legion.human_question",
            "agent": api.self(),
            "run_id": agent.run_id,
            "question_id": question_id,
            "question": question,
        }
        pending: dict[str, Any] = {"event": event, "question": info}
        agent.questions[question_id] = pending
        handler = self.config.get("handler", agent.owner)
        if handler is not None:
            try:
                await api.asend(handler, info)
            except Exception:  # a handler name nobody holds: the question stays pending
                pass
        timeout = self.config.get("timeout")
        from legion import telemetry

        asked = time.perf_counter()
        telemetry.emit(
            telemetry.HUMAN_INPUT_REQUIRED,
            {"system_time": time.time()},
            {"question_id": question_id, "question": question},
        )
        try:
            with trio.fail_after(float("inf") if timeout is None else timeout):
                await event.wait()
        except trio.TooSlowError:
            raise RuntimeError(
                f"HumanTool: timed out waiting for a human response after {timeout} s"
            ) from None
        finally:
            agent.questions.pop(question_id, None)
        answer: str = pending["answer"]
        telemetry.emit(
            telemetry.HUMAN_INPUT_RECEIVED,
            {"duration": time.perf_counter() - asked},
            {"question_id": question_id},
        )
        return answer
