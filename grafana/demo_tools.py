"""The demo's tool, in a module of its own: `demo.py` reloads it now and then (hot reload)."""

from __future__ import annotations

import legion


class Calculator(legion.Tool):
    """Arithmetic."""

    def add(self, a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b
