"""Takeover in seconds after kill -9: evict a dead peer from the consumer group at once.

A worker killed with SIGKILL leaves nothing behind to tell the group; the coordinator notices only
when its session times out (``broker_session_timeout``, 10 s), and its partitions stay unserved that
long. Every worker knows its peers' web URLs (Faust's assignor advertises them). This watch probes
each peer's web port every ``MEVRISK_PEER_WATCH_SECS``: a refused connection means the peer's host
answered and no process listens there. After two refusals in a row for the same group member, the
watch removes that member from the group (LeaveGroup with its member id, as the member itself would
on a graceful stop), and the coordinator rebalances its partitions to the survivors at once.

A timeout, a reset or any other error is not a refusal: a busy, partitioned or unreachable peer is
left to the session timeout. A peer restarted meanwhile joins with a new member id, which starts a
fresh count (the old member id is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.protocol.group import LeaveGroupRequest
from prometheus_client import Counter

from streams import kafka_clients, metrics
from streams.app import app
from streams.settings import get_settings

log = logging.getLogger(__name__)

REFUSALS_TO_EVICT = 2
PROBE_TIMEOUT_S = 0.5

EVICTIONS = Counter(
    "mevrisk_peer_evictions_total",
    "Group members removed by this worker because their web port refused connections (dead peers).",
    registry=metrics.REGISTRY)


async def refused(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True only when a TCP connection to ``url``'s host and port is actively refused."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout_s)
    except ConnectionRefusedError:
        return True
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return False


def member_urls(members: list[Any]) -> dict[str, str]:
    """Web URL -> member id, from a DescribeGroups response's members (Faust's assignor puts each
    member's URL in the user data of its subscription)."""
    found: dict[str, str] = {}
    for member in members:
        member_id, metadata = member[0], member[-2]
        url = _advertised_url(metadata)
        if url is not None:
            found[url.rstrip("/")] = str(member_id)
    return found


def _advertised_url(metadata: bytes) -> str | None:
    try:
        url = orjson.loads(ConsumerProtocolMemberMetadata.decode(metadata).user_data).get("url")
    except Exception as exc:  # another client's member, or no metadata yet
        log.debug("member metadata without a URL: %r", exc)
        return None
    return url if isinstance(url, str) else None


class PeerWatch:
    """Counts refusals per (peer URL, member id) and evicts at ``REFUSALS_TO_EVICT``."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap, self.group = bootstrap, group
        self.refusals: dict[tuple[str, str], int] = {}

    async def probe(self, peers: list[str]) -> list[str]:
        """One round: probe every peer; returns the member ids evicted."""
        probes = await asyncio.gather(*map(refused, peers))
        dead = [url for url, gone in zip(peers, probes, strict=True) if gone]
        if not dead:
            self.refusals.clear()
            return []
        admin = kafka_clients.admin(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_consumer_groups([self.group])
            urls = member_urls(list(response.groups[0][5]))
            counts = {(url, urls[url]): self.refusals.get((url, urls[url]), 0) + 1
                      for url in dead if url in urls}
            self.refusals = counts
            evicted = []
            for (url, member_id), count in counts.items():
                if count >= REFUSALS_TO_EVICT:
                    node = await admin.find_coordinator(self.group)
                    await admin._send_request(LeaveGroupRequest(self.group, member_id), node)
                    log.warning("peer %s is gone (its web port refused %d probes): removed member %s "
                                "from group %s", url, count, member_id, self.group)
                    EVICTIONS.inc()
                    evicted.append(member_id)
            return evicted
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


@app.task
async def watch_peers() -> None:
    """Probe the group's other workers every ``MEVRISK_PEER_WATCH_SECS`` (0: off)."""
    from streams.api import peer_urls

    settings = get_settings()
    if settings.peer_watch_secs <= 0:
        return
    watch = PeerWatch(settings.kafka_bootstrap_servers, app.conf.id)
    while True:
        await asyncio.sleep(settings.peer_watch_secs)
        peers = peer_urls(app)
        if not peers:
            continue
        try:
            await watch.probe(peers)
        except Exception as exc:  # advisory: the session timeout still evicts a dead peer
            log.warning("peer watch: %r", exc)
