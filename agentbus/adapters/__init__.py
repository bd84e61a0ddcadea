"""Adapters that run a real agent framework's agent inside an :class:`~agentbus.AgentExecutor`.

Each adapter is an :data:`~agentbus.AgentRunner` (``async (run) -> AgentOutput``) and lives in
its own module, importing its framework only there: ``import agentbus`` and
``import agentbus.adapters`` work without any framework installed.

Available:
    :class:`agentbus.adapters.pydantic_ai.PydanticAIRunner` — pydantic-ai 2.x agents
    (the ``pydantic-ai`` extra: ``pip install 'agentbus[pydantic-ai]'``).

``from agentbus.adapters import PydanticAIRunner`` also works; it imports pydantic-ai on
first access and raises :class:`ImportError` naming the extra when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pydantic_ai import PydanticAIRunner

__all__ = ["PydanticAIRunner"]


def __getattr__(name: str) -> Any:
    if name == "PydanticAIRunner":
        from .pydantic_ai import PydanticAIRunner

        return PydanticAIRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
