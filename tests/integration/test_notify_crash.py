"""kill -9 the worker between firing and delivery, restart it: each alert event is delivered once.

Real broker, real worker processes, a real HTTP receiver on loopback. The receiver's
answer (503 or 200) is switched by the test; every request is recorded with its
``Idempotency-Key`` (the alert event id: the channel does not group).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.notify.model import should_notify
from tests.integration.conftest import Env, Worker, loopback_http, read_to_end, run, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
SECRET = "crash-secret"


class _Hook(BaseHTTPRequestHandler):
    """Answers 200 while ``healthy`` is set, else 503; records ``(idempotency key, status)``."""

    healthy: ClassVar[threading.Event] = threading.Event()
    requests: ClassVar[list[tuple[str, int]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = 200 if type(self).healthy.is_set() else 503
        type(self).requests.append((self.headers.get("Idempotency-Key", ""), status))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[ThreadingHTTPServer]:
    _Hook.requests = []
    _Hook.healthy.clear()
    with loopback_http(_Hook) as server:
        yield server


CONCURRENCY = 64
"""Deliveries the webhook channel makes at once (its maximum). A failing delivery retries in its
slot, so every alert event of the incident is retried only if they fit; the flash crash raises
about 26 events with the shipped rules (the asset scope's PriceJump, LiquidityDrop and
TickAnomalyBurst per asset, the strategies' revert storms, HighVaR95). :func:`_fired_and_committed`
checks that they fit."""


@pytest.fixture
def worker_env(tmp_path: Path, webhook_receiver: ThreadingHTTPServer) -> dict[str, str]:
    """Worker settings: one ungrouped webhook channel that retries fast for a long time, with a slot
    per alert event (:data:`CONCURRENCY`)."""
    channels = tmp_path / "channels.yaml"
    channels.write_text(json.dumps({
        "channels": {"webhook": {
            "type": "webhook", "url": f"http://127.0.0.1:{webhook_receiver.server_port}/hook",
            "secret_env": "MEVRISK_WEBHOOK_SECRET", "enabled": True, "grouping": False,
            "allow_insecure": True,  # the loopback receiver speaks plain http://
            "timeout_secs": 2, "max_attempts": 1000, "concurrency": CONCURRENCY,
            "backoff": {"initial_secs": 0.2, "multiplier": 2, "max_secs": 0.5, "jitter": 0},
        }},
        "routes": [{"channels": ["webhook"]}],
        "digest": {"enabled": False},
    }))
    return {
        "MEVRISK_BAR_MS": "1000",
        "MEVRISK_IDLE_HEARTBEAT_SECS": "600",  # no idle clock advance while the worker is down
        "MEVRISK_IDLE_SOURCE_SECS": "3",
        "MEVRISK_CHANNELS_FILE": str(channels),
        "MEVRISK_WEBHOOK_SECRET": SECRET,
        # Faust reads these from the environment. A restarted worker cannot join its group before the
        # killed member's session expires (60 s by default); 6 s is the broker's minimum.
        "BROKER_SESSION_TIMEOUT": "6",
        "BROKER_HEARTBEAT_INTERVAL": "1",
    }


def _replay_incident(env: Env, tmp_path: Path) -> None:
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "11", "--rate", "150", "--duration", "100",
                "--start-ms", str(START_MS), "--incident", "flash-crash@60s/20s", "--record", str(recording))
    env.mevrisk("replay", str(recording))


LATENESS_MS = 2_000
"""The workers' MEVRISK_ALLOWED_LATENESS_MS (tests/integration/conftest.py pins it)."""


def _at_rest(worker: Worker, recording: Path) -> None:
    """Wait until ``worker``'s clock came to rest after the recording's last event: every input
    partition fell silent and nothing holds it, so it stands at the newest event less the lateness
    (``RiskPipeline``); everything the worker will publish for this input has been released."""
    lines = recording.read_text().splitlines()
    last_ms = max(json.loads(line).get("ts_ms", 0) for line in lines if line.strip())
    try:
        wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= last_ms - LATENESS_MS, 90,
                   "the worker's clock to come to rest after the input's last event")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.state()}") from None


def _notifiable_ids(env: Env) -> set[str]:
    """Ids of the alert events on risk.alerts the webhook route must deliver."""
    alerts = run(read_to_end(env.bootstrap, env.topic("risk.alerts")))
    return {a["event_id"] for a in alerts if should_notify(a)}


def _statuses(key: str) -> list[int]:
    return [status for k, status in list(_Hook.requests) if k == key]


def _delivered_in_audit(env: Env) -> Counter[str]:
    """Event id -> number of ``delivered`` outcomes on the notify chain of risk.audit."""
    audit = run(read_to_end(env.bootstrap, env.topic("risk.audit")))
    return Counter(
        event_id for r in audit
        if r["stream"].startswith("notify@") and r["payload"]["outcome"] == "delivered"
        for event_id in r["payload"]["event_ids"]
    )


def _delivered_and_audited(env: Env, ids: set[str]) -> bool:
    """Every event in ``ids`` got a 200 from the receiver and a ``delivered`` audit record."""
    audited = _delivered_in_audit(env)
    return all(200 in _statuses(i) and audited[i] for i in ids)


async def _uncommitted(env: Env, topic: str) -> int:
    """Records of ``topic`` beyond the worker's consumer-group commit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap, group_id=f"{env.prefix}app",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()  # no public listing call
        tps = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic) or ())]
        assert tps, f"{topic} has no partitions"
        end = await consumer.end_offsets(tps)
        behind = 0
        for tp in tps:
            behind += end[tp] - (await consumer.committed(tp) or 0)
        return behind
    finally:
        await consumer.stop()


def _fired_and_committed(
    env: Env, worker: Worker, predicate: Callable[[set[str]], bool], what: str,
) -> set[str]:
    """Wait until alerts exist, ``predicate(ids)`` holds and the worker committed every alert."""
    def ready() -> set[str] | None:
        ids = _notifiable_ids(env)
        assert len(ids) <= CONCURRENCY, f"{len(ids)} alert events: more than the channel retries at once"
        if ids and predicate(ids) and run(_uncommitted(env, env.topic("risk.alerts"))) == 0:
            return ids
        return None

    try:
        ids: set[str] = wait_until(ready, 90, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrequests {Counter(_Hook.requests)}\n{worker.state()}") from None
    return ids


def _notify_idle(env: Env, worker: Worker, timeout: float = 60, settle_s: float = 2.0) -> None:
    """Wait until ``worker`` has committed every alert event, holds no queued webhook delivery and
    made no webhook request for ``settle_s`` (longer than its largest backoff): every delivery it
    would make for what is on risk.alerts, a duplicate included, has been made."""
    attempts = "mevrisk_notification_attempts_total"

    def idle() -> bool:
        if run(_uncommitted(env, env.topic("risk.alerts"))) != 0:
            return False
        before = (worker.metric(attempts, channel="webhook"), len(_Hook.requests))
        time.sleep(settle_s)
        after = (worker.metric(attempts, channel="webhook"), len(_Hook.requests))
        return before == after and worker.metric("mevrisk_notification_queue_depth", channel="webhook") == 0

    try:
        wait_until(idle, timeout, "the notifier to be idle")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrequests {Counter(_Hook.requests)}\n{worker.state()}") from None


def _all_delivered(env: Env, worker: Worker, timeout: float, what: str) -> set[str]:
    """Wait until every notifiable alert event was delivered and audited, then until the notifier
    is idle: a duplicate from a late resume or a re-read alert has been sent by then."""
    def delivered() -> set[str] | None:
        ids = _notifiable_ids(env)
        return ids if _delivered_and_audited(env, ids) else None

    try:
        ids: set[str] = wait_until(delivered, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrequests {Counter(_Hook.requests)}\n{worker.state()}") from None
    _notify_idle(env, worker)
    return ids


def _dispatcher_started(worker: Worker) -> bool:
    """The worker built its dispatcher (its per-channel series exist) and so resumed its ledger."""
    return 'mevrisk_notification_queue_depth{channel="webhook"}' in worker.metrics_text()


@pytest.mark.kills_worker
@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_kill_9_while_delivery_pending_then_delivered_once_after_restart(
    env: Env, start_worker: Callable[..., Worker], tmp_path: Path, worker_env: dict[str, str],
    stop_signal: int,
) -> None:
    """Stopped (kill -9, or a graceful SIGTERM that must exit 0 promptly: the watch checks it) while
    deliveries are pending; the restarted worker delivers each once."""
    worker = start_worker(**worker_env)
    _replay_incident(env, tmp_path)
    # Fired, published, consumed and committed by the notify agent; the peer keeps failing, so
    # each delivery is pending in the ledger and nothing on risk.alerts will hand it over again.
    fired = _fired_and_committed(
        env, worker, lambda ids: all(len(_statuses(i)) >= 2 for i in ids),
        "alert events whose webhook delivery is failing and being retried",
    )
    worker.stop(stop_signal)
    assert worker.proc.returncode == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)
    assert not [s for _, s in _Hook.requests if s == 200]
    assert not _delivered_in_audit(env)

    _Hook.healthy.set()
    restarted = start_worker(**worker_env)

    ids = _all_delivered(env, restarted, 60, "the pending deliveries to complete after the restart")

    assert fired <= ids
    for event_id in ids:
        assert _statuses(event_id).count(200) == 1, f"{event_id}: {_statuses(event_id)}"
    assert {k for k, s in _Hook.requests if s == 200} == ids
    assert all(n == 1 for n in _delivered_in_audit(env).values()), _delivered_in_audit(env)
    restarted.assert_healthy()


@pytest.mark.kills_worker
def test_kill_9_after_delivery_then_nothing_is_delivered_again(
    env: Env, start_worker: Callable[..., Worker], tmp_path: Path, worker_env: dict[str, str],
) -> None:
    _Hook.healthy.set()
    worker = start_worker(**worker_env)
    _replay_incident(env, tmp_path)
    _at_rest(worker, tmp_path / "input.jsonl")  # killed earlier, the restart rightly publishes the rest
    ids = _fired_and_committed(env, worker, lambda ids: _delivered_and_audited(env, ids),
                               "alert events delivered and audited")
    worker.stop(signal.SIGKILL)
    before = list(_Hook.requests)

    restarted = start_worker(**worker_env)
    try:
        wait_until(lambda: _dispatcher_started(restarted), 60, "the restarted worker's dispatcher")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{restarted.state()}") from None
    _notify_idle(env, restarted)  # the restarted dispatcher has resumed whatever its ledger held pending

    assert _Hook.requests == before, "nothing is delivered again after the restart"
    new = [f"{a['rule']} {a['entity_id']} {a['transition']} ts={a['ts_ms']} id={a['event_id']}"
           for a in run(read_to_end(env.bootstrap, env.topic("risk.alerts")))
           if should_notify(a) and a["event_id"] not in ids]
    assert _notifiable_ids(env) == ids, f"the restart published new alert events: {new}\n{restarted.state()}"
    assert all(n == 1 for n in _delivered_in_audit(env).values()), _delivered_in_audit(env)
    restarted.assert_healthy()


async def _partitions_by_key(bootstrap: str, topic: str) -> dict[bytes, set[int]]:
    """Key -> the partitions of ``topic`` holding records with that key."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: dict[bytes, set[int]] = {}
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    found.setdefault(record.key, set()).add(tp.partition)
    finally:
        await consumer.stop()
    return found


@pytest.mark.kills_worker
def test_rebalance_hands_pending_deliveries_to_the_surviving_worker(
    env: Env, start_worker: Callable[..., Worker], tmp_path: Path, worker_env: dict[str, str],
) -> None:
    workers = [start_worker(**worker_env), start_worker(**worker_env)]
    for worker in workers:  # both running, so the survivor is handed partitions, not started with them
        wait_until(lambda w=worker: _dispatcher_started(w), 90, "each worker's dispatcher")
    _replay_incident(env, tmp_path)
    fired = _fired_and_committed(
        env, workers[0], lambda ids: all(len(_statuses(i)) >= 2 for i in ids),
        "alert events whose webhook delivery is failing and being retried",
    )
    # The ledger's changelog is co-partitioned with risk.alerts: same key bytes, same partition.
    ledger = run(_partitions_by_key(env.bootstrap, f"{env.prefix}app-fingerprint_to_deliveries-changelog"))
    alerts = run(_partitions_by_key(env.bootstrap, env.topic("risk.alerts")))
    assert ledger and set(ledger) <= set(alerts)
    assert all(ledger[key] == alerts[key] for key in ledger), (ledger, alerts)

    # kill -9 the worker retrying the deliveries: their partitions move to the other one
    attempts = [w.metric("mevrisk_notification_attempts_total", channel="webhook") for w in workers]
    owner, survivor = (workers[0], workers[1]) if attempts[0] >= attempts[1] else (workers[1], workers[0])
    assert max(attempts) > 0, attempts
    survivor_attempts = survivor.metric("mevrisk_notification_attempts_total", channel="webhook")
    owner.stop(signal.SIGKILL)
    _Hook.healthy.set()

    ids = _all_delivered(env, survivor, 90, "every pending delivery completed by the surviving worker")
    assert fired <= ids
    for event_id in ids:
        assert _statuses(event_id).count(200) == 1, f"{event_id}: {_statuses(event_id)}"
    assert survivor.metric("mevrisk_notification_attempts_total", channel="webhook") > survivor_attempts
    survivor.assert_healthy()
