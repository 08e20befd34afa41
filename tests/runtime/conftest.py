"""Runtime tests share the application's connection: each starts with an empty mailbox."""

from __future__ import annotations

import pytest

from legion.supervisor import client


@pytest.fixture(autouse=True)
def empty_mailbox() -> None:
    endpoint = client.get()
    endpoint.sync()
    with endpoint._lock:
        endpoint.mailbox.clear()
