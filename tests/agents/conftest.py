"""Agent tests share the application's connection: each starts with an empty mailbox and an
empty Vault, and real LLM calls are blocked (pytest is imported, so `legion.testing` blocks)."""

from __future__ import annotations

import pytest

import legion
from legion.supervisor import client


@pytest.fixture(autouse=True)
def clean_state() -> None:
    endpoint = client.get()
    endpoint.sync()
    with endpoint._lock:
        endpoint.mailbox.clear()
    legion.vault.clear()
