"""Sandbox test fixtures; the leak check around every test is the project-wide one."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "trio"
