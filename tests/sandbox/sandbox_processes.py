"""Runtime processes the sandbox tests start (importable by module path, as workers need)."""

from __future__ import annotations

import os

import legion


class Evaluator(legion.Server):
    """Evaluates code in the sandbox from inside a runtime process, as an agent does."""

    async def handle_call(self, code: str, from_: legion.From) -> list[object]:
        from legion.sandbox import aevaluate, runner

        ev = await aevaluate(code)
        return [ev.ok, ev.value, runner.ZYGOTE.pid, os.getpid()]
