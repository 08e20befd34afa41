"""Telemetry tests: no handler is left attached between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legion import telemetry


@pytest.fixture(autouse=True)
def no_handlers_left() -> Iterator[None]:
    yield
    for handler_id in telemetry.list_handlers():
        telemetry.detach(handler_id)
