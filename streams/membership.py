"""Static consumer-group membership (KIP-345), so a restarted worker gets its partitions back at once.

Without it, a worker restarted after kill -9 joins as a new member and the coordinator waits for
the dead one to miss its session (``broker_session_timeout``, 10 s) before it assigns anything.
With a ``group.instance.id`` that is the same across restarts of one worker and unique among
workers, the coordinator hands the restarted member the old member's partitions immediately.

The id is ``MEVRISK_WORKER_ID`` when set, else ``<host name>:<web port>`` (the web port is unique
per worker on a host, and the same across its restarts). ``MEVRISK_WORKER_ID=dynamic`` turns static
membership off.

A static member does not leave the group when it closes (aiokafka skips the LeaveGroup request),
so a peer would wait a session timeout before taking over from a worker stopped on purpose.
``leave_on_close`` restores the leave for a graceful stop; kill -9 is what static membership covers.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

log = logging.getLogger(__name__)

DYNAMIC = "dynamic"


def instance_id(configured: str | None, web_port: int) -> str | None:
    """The ``group.instance.id`` of this worker, or None for dynamic membership.

    >>> instance_id("risk-a", 6066)
    'risk-a'
    >>> instance_id("dynamic", 6066) is None
    True
    >>> instance_id(None, 6070).endswith(":6070")
    True
    """
    if configured == DYNAMIC:
        return None
    return configured or f"{socket.gethostname()}:{web_port}"


async def _leave_group(self: Any) -> None:
    """``GroupCoordinator._maybe_leave_group`` that also leaves as a static member (LeaveGroup by
    member id, which the coordinator honours for static members too)."""
    if self.generation > 0:
        try:
            await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
        except KafkaError as err:
            log.warning("LeaveGroup request failed: %s", err)
    self.reset_generation()


def leave_on_close() -> None:
    """Make every consumer of this process leave its group on a graceful close."""
    GroupCoordinator._maybe_leave_group = _leave_group  # type: ignore[method-assign]
