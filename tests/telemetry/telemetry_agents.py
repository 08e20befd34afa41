"""Agents used by the telemetry tests (workers import them by module path)."""

from __future__ import annotations

import legion


class CounterTool(legion.Tool):
    """Counts things."""

    def add(self, a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b


class TelemetryAgent(legion.Agent):
    """Adds numbers with CounterTool."""

    tools = [CounterTool]


class Flaky(legion.Server):
    """A supervised child for the demo workload: crashes when told to, and is restarted."""

    def init(self, arg: object) -> object:
        return None

    def handle_cast(self, message: object) -> object:
        raise RuntimeError("told to crash")
