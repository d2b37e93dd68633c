"""Where the idle heartbeat moves the event-time clock when no input arrives.

Event time keeps moving while every input is quiet, so stale-feed rules, ``for:`` durations and
escalations still fire. The heartbeat advances from the newest event time seen by the idle wall
time, but never from beyond the wall clock: inputs may be stamped up to
``MEVRISK_MAX_FUTURE_SKEW_MS`` ahead of their broker time, and one such record would otherwise
move the clock minutes ahead at the first quiet moment, making every later input late.
"""

from __future__ import annotations


def heartbeat_target_ms(newest_event_ms: int, wall_ms: int, idle_ms: int) -> int:
    """Event time (ms since the epoch) to advance the clock to after ``idle_ms`` of wall time
    without input: ``min(newest_event_ms, wall_ms) + idle_ms``.

    >>> heartbeat_target_ms(1_000, 5_000, 2_000)  # a replay of older data: from its newest event
    3000
    >>> heartbeat_target_ms(9_000_000, 5_000, 2_000)  # a record stamped ahead: from the wall clock
    7000
    """
    return min(newest_event_ms, wall_ms) + idle_ms
