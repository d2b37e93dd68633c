"""Supervision: a worker whose agent or task died does not limp on.

The pipeline isolates failures per event and per portfolio (``agents.pipeline``), so an
exception reaching an agent or task is a bug, not bad input. When one does, the component
is marked crashed (``mevrisk_component_up{component} 0``, ``/api/v1/health`` answers 503
naming it, a log line says ``component <name> crashed``) and the App is stopped with the
error, so the worker exits non-zero and its supervisor (systemd, Kubernetes, the test
fixture) restarts it. A restart does not re-crash on the same input: the pipeline's
isolation quarantines what raised to ``risk.dlq`` instead of letting it escape again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from streams import metrics

log = logging.getLogger(__name__)

COMPONENTS: dict[str, str] = {}
"""Component name -> ``running`` or ``crashed``."""
ERRORS: dict[str, str] = {}
"""Component name -> the error that crashed it."""
_stops: list[asyncio.Future[Any]] = []

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def register(name: str) -> None:
    """Declare a component (its gauge reads 1 from the first scrape)."""
    COMPONENTS.setdefault(name, "running")
    metrics.COMPONENT_UP.labels(name).set(1 if COMPONENTS[name] == "running" else 0)


def dead() -> list[str]:
    """Names of the components that crashed."""
    return sorted(name for name, state in COMPONENTS.items() if state == "crashed")


EXIT_GRACE_SECS = 15.0
"""After a crash the App stops cleanly; a worker still running this long after is exited hard."""
CRASH_EXIT_CODE = 70


def crashed(name: str, error: BaseException) -> None:
    """Mark ``name`` crashed and stop the App with ``error`` (the worker exits non-zero)."""
    if COMPONENTS.get(name) == "crashed":
        return  # the worker is already stopping for this component
    COMPONENTS[name] = "crashed"
    ERRORS[name] = f"{type(error).__name__}: {error}"[:500]
    metrics.COMPONENT_UP.labels(name).set(0)
    log.error("component %s crashed: %r; stopping the worker (exit non-zero) for a clean restart",
              name, error, exc_info=error)
    from streams.app import app

    _stops.append(asyncio.ensure_future(app.crash(error)))  # type: ignore[arg-type]
    asyncio.get_running_loop().call_later(EXIT_GRACE_SECS, _exit_hard, name)


def _exit_hard(name: str) -> None:
    """The App did not stop after a crash: exit non-zero anyway, so the supervisor restarts it."""
    log.error("worker still running %.0f s after component %s crashed; exiting with %d",
              EXIT_GRACE_SECS, name, CRASH_EXIT_CODE)
    logging.shutdown()
    os._exit(CRASH_EXIT_CODE)


def supervised(name: str) -> Callable[[F], F]:
    """Decorate an agent, App task or timer body (under Faust's decorator): an exception that
    escapes it crashes the worker."""
    register(name)

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                crashed(name, error)
                raise
        return run  # type: ignore[return-value]
    return wrap
