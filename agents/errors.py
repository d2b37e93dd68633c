"""Exception root for the whole project (STYLE 9).

Every package raises subclasses of :class:`MevRiskError` so callers (agents,
the CLI, the DLQ policy) can catch project errors in one place.
"""

from __future__ import annotations


class MevRiskError(Exception):
    """Root of every exception raised by MEV Risk Stream code."""
