"""Adapters that run a real agent framework's agent inside an :class:`~agentbus.AgentExecutor`.

Each adapter is an :data:`~agentbus.AgentRunner` (``async (run) -> AgentOutput``) and lives in
its own module, importing its framework only there: ``import agentbus`` and
``import agentbus.adapters`` work without any framework installed.

Available:
    :class:`agentbus.adapters.pydantic_ai.PydanticAIRunner` — pydantic-ai 2.x agents
    (the ``pydantic-ai`` extra: ``pip install 'agentbus[pydantic-ai]'``), with
    :class:`agentbus.adapters.pydantic_ai.AgentbusCapability` to register on an agent when
    it is built (optional; makes each run cheaper).

``from agentbus.adapters import PydanticAIRunner`` (or ``AgentbusCapability``) also works; it
imports pydantic-ai on first access and raises :class:`ImportError` naming the extra when it
is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pydantic_ai import AgentbusCapability, PydanticAIRunner

__all__ = ["AgentbusCapability", "PydanticAIRunner"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import pydantic_ai

        return getattr(pydantic_ai, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
