"""Agents used by the telemetry tests (workers import them by module path)."""

from __future__ import annotations

import os
from typing import Any

import legion
from legion.tools.human import HumanTool


class CounterTool(legion.Tool):
    """Counts things."""

    def add(self, a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b


class TelemetryAgent(legion.Agent):
    """Adds numbers with CounterTool."""

    tools = [CounterTool]


class AskingAgent(legion.Agent):
    """Asks a human before it answers."""

    tools = [HumanTool]

    def tool_config(self, tool: Any) -> dict[str, Any]:
        return {"timeout": 30.0} if tool is HumanTool else {}


class Flaky(legion.Server):
    """A supervised child for the demo workload: crashes when told to, and is restarted."""

    def init(self, arg: object) -> object:
        return None

    def handle_cast(self, message: object) -> object:
        raise RuntimeError("told to crash")


class Emitter(legion.Server):
    """Emits `("test", "emitted")` when cast `how`, then sends nothing more.

    `how` is "here" (from the handler), "thread" (from a thread of its own) or, with
    `init("busy")`, from a process whose trio loop has another task alive (so it waits for
    messages on trio rather than on its synchronous fast path)."""

    def init(self, arg: object) -> object:
        if arg == "busy":
            import trio

            async def idle() -> None:
                await trio.sleep_forever()

            trio.lowlevel.spawn_system_task(idle)
        return None

    def handle_call(self, message: object, from_: legion.From) -> object:
        return "done"  # answered after every event emitted before it

    def handle_cast(self, message: object) -> object:
        import threading

        from legion import telemetry

        def emit() -> None:
            telemetry.emit(("test", "emitted"), {"n": 1}, {"how": message})

        if isinstance(message, list) and message[0] == "burst":  # ["burst", count, size]
            for n in range(message[1]):
                telemetry.emit(("test", "burst"), {"n": n}, {"blob": "x" * message[2]})
            return None
        if isinstance(message, list) and message[0] == "restarts":  # ["restarts", count]
            for n in range(message[1]):
                telemetry.emit(telemetry.SUPERVISOR_RESTART, {}, {"supervisor": f"S{n}"})
            return None
        if message == "thread":
            thread = threading.Thread(target=emit)
            thread.start()
            thread.join()
        elif message == "odd":  # a measurement the wire cannot carry, then a good event
            telemetry.emit(("test", "odd"), {"n": object()})
            emit()
        elif isinstance(message, list) and message[0] == "odd":  # ["odd", what is odd]
            telemetry.emit(("test", "odd"), *ODD_EVENTS[message[1]]())
            emit()
        else:
            emit()
        return None


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


ODD_EVENTS: dict[str, Any] = {
    # (measurements, metadata) of an event the wire cannot carry as it is
    "deep metadata": lambda: ({"n": 1}, {"payload": _nested(5000)}),
    "deep measurement": lambda: ({"sizes": _nested(5000)}, {}),
    "surrogate in metadata": lambda: ({"n": 1}, {"file": os.fsdecode(b"caf\xe9.csv")}),
    "surrogate in a metadata key": lambda: ({"n": 1}, {os.fsdecode(b"caf\xe9"): 1}),
    "surrogate in a measurement": lambda: ({"n": os.fsdecode(b"caf\xe9")}, {}),
}
