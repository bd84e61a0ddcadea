"""middleware: composable event handlers for the agentbus ``EventBus`` (seed 003's catalogue).

A handler is any ``async (event) -> None`` callable (:data:`agentbus.Handler`). Wrappers take
the handler they wrap, so chains read left to right::

    from middleware import FilteredHandler, RetryHandler, chain, when

    handler = chain(when(lambda e: e.agent_id == "billing"), retry.wrap, alerting.on_error)
    await bus.subscribe(EventType.ANY, handler)

Stateful handlers have an idempotent ``aclose()``; ``EventBus.close()`` calls it, so batches
are flushed and retries finished or dead-lettered when the bus shuts down.
"""

from __future__ import annotations

__all__: list[str] = []
