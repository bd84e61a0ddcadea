"""Fixtures shared by the engine tests: a fresh bus and a capturing handler on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentbus import EventBus, EventType
from agentbus.testing import CapturingHandler


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    """A fresh bus, closed after the test."""
    b = EventBus()
    yield b
    await b.close()


@pytest.fixture
async def rec(bus: EventBus) -> CapturingHandler:
    """A ``CapturingHandler`` subscribed to every event of ``bus``."""
    r = CapturingHandler()
    await bus.subscribe(EventType.ANY, r)
    return r
