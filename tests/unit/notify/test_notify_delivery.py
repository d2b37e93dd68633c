"""Dispatcher against real loopback peers: an aiohttp receiver and aiosmtpd servers."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agents.notify import payloads, signing
from agents.notify.config import Backoff, NotifyConfig, parse_config
from agents.notify.delivery import Dispatcher, OutcomeRecord, backoff_delay
from agents.notify.errors import InvalidAlertEvent
from agents.notify.ledger import DeliveryLedger
from tests.unit.notify.helpers import (
    PD_KEY,
    SECRET,
    SMS_SID,
    SMS_TOKEN,
    SMTP_PASSWORD,
    SMTP_USER,
    Receiver,
    SmtpPeer,
    free_port,
    make_event,
)

# aiosmtpd warns when AUTH is allowed before TLS; the plain test server is loopback-only.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)

FAST = {"initial_secs": 0.01, "multiplier": 2, "max_secs": 0.05, "jitter": 0.5}
ENV = {"HOOK_SECRET": SECRET, "SMS_TOKEN": SMS_TOKEN, "PD_KEY": PD_KEY,
       "SMTP_PASSWORD": SMTP_PASSWORD}


def _config(url: str, smtp_port: int | None = None, **extra: Any) -> NotifyConfig:
    channels: dict[str, Any] = {
        "webhook": {"type": "webhook", "url": f"{url}/hook", "secret_env": "HOOK_SECRET"},
        "slack": {"type": "slack", "url": f"{url}/slack"},
        "sms": {"type": "sms", "base_url": f"{url}/sms", "account_sid": SMS_SID,
                "auth_token_env": "SMS_TOKEN", "from_number": "+100", "to": ["+201", "+202"]},
        "pagerduty": {"type": "pagerduty", "url": f"{url}/pd", "routing_key_env": "PD_KEY"},
        "email": {"type": "email", "host": "127.0.0.1", "port": smtp_port or free_port(),
                  "security": "none", "username": SMTP_USER, "password_env": "SMTP_PASSWORD",
                  "from_addr": "risk@mev.test", "to": ["oncall@mev.test", "desk@mev.test"]},
    }
    data: dict[str, Any] = {
        "dashboard_url": "http://dash.test/dashboard",
        # allow_insecure: the loopback peers speak plain http:// and SMTP without TLS
        "defaults": {"timeout_secs": 2, "max_attempts": 4, "backoff": FAST, "allow_insecure": True},
        "channels": channels,
        "grouping": {"group_wait_secs": 0, "group_interval_secs": 0},
    }
    for key, value in extra.items():
        if key in channels:
            channels[key] = {**channels[key], **value}
        else:
            data[key] = value
    return parse_config(data, ENV)


class Harness:
    """A dispatcher with recorded outcomes and sleeps, a fresh registry and a dict ledger."""

    def __init__(self, config: NotifyConfig, store: dict[str, Any] | None = None,
                 real_sleep: bool = False, by_fingerprint: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.store: dict[str, Any] = {} if store is None else store
        self.outcomes: list[OutcomeRecord] = []
        self.sleeps: list[float] = []

        async def sleep(secs: float) -> None:
            self.sleeps.append(secs)
            await asyncio.sleep(secs if real_sleep else 0)

        self.dispatcher = Dispatcher(
            config, registry=self.registry,
            ledger=DeliveryLedger(self.store, by_fingerprint=by_fingerprint),
            on_outcome=self.outcomes.append, sleep=sleep, seed=7,
        )

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def outcomes_for(self, channel: str) -> list[str]:
        return [o.outcome for o in self.outcomes if o.channel == channel]


async def test_metric_series_exist_from_start(receiver: Receiver) -> None:
    h = Harness(_config(receiver.url))
    async with h.dispatcher:
        for channel in ("webhook", "slack", "sms", "pagerduty", "email"):
            for outcome in ("delivered", "failed", "gave_up"):
                assert h.sample("mevrisk_notifications_total",
                                channel=channel, outcome=outcome) == 0.0
            assert h.sample("mevrisk_notification_attempts_total", channel=channel) == 0.0
            assert h.sample("mevrisk_notification_latency_seconds_count", channel=channel) == 0.0


async def test_http_channels_receive_verifiable_payloads(receiver: Receiver) -> None:
    h = Harness(_config(receiver.url))
    event = make_event(severity="critical", channels=["webhook", "slack", "sms", "pagerduty"])
    async with h.dispatcher as d:
        await d.submit(event)
        await d.drain()

    [hook] = receiver.at("/hook")
    assert signing.verify(hook.body, SECRET, hook.headers["X-MevRisk-Signature"],
                          hook.headers["X-MevRisk-Timestamp"], now_secs=time.time())
    assert hook.headers["Idempotency-Key"] == "evt-1"
    assert hook.headers["Content-Type"] == "application/json"
    assert orjson.loads(hook.body)["alerts"][0]["id"] == "alert-1"

    [slack] = receiver.at("/slack")
    msg = orjson.loads(slack.body)
    assert msg["attachments"][0]["color"] == payloads.SLACK_COLOURS["critical"]
    assert "VaR95Breach" in msg["text"] and msg["blocks"]

    sms = receiver.at(f"/sms/2010-04-01/Accounts/{SMS_SID}/Messages.json")
    assert sorted(parse_qs(r.body.decode())["To"][0] for r in sms) == ["+201", "+202"]
    form = parse_qs(sms[0].body.decode())
    assert form["From"] == ["+100"] and "CRITICAL" in form["Body"][0]
    auth = base64.b64decode(sms[0].headers["Authorization"].removeprefix("Basic ")).decode()
    assert auth == f"{SMS_SID}:{SMS_TOKEN}"
    assert sms[0].headers["Content-Type"] == "application/x-www-form-urlencoded"

    [pd] = receiver.at("/pd")
    body = orjson.loads(pd.body)
    assert body["event_action"] == "trigger" and body["dedup_key"] == "fp-var95-alpha"
    assert body["routing_key"] == PD_KEY and body["payload"]["severity"] == "critical"

    for channel in ("webhook", "slack", "sms", "pagerduty"):
        assert h.outcomes_for(channel) == ["delivered"]
        assert h.sample("mevrisk_notifications_total", channel=channel,
                        outcome="delivered") == 1.0
    assert h.store["evt-1@webhook"]["state"] == "delivered"
    assert "event" not in h.store["evt-1@webhook"]


async def test_email_reaches_smtp_server(receiver: Receiver, smtp_server: SmtpPeer) -> None:
    h = Harness(_config(receiver.url, smtp_server.port))
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["email"]))
        await d.drain()
    assert h.outcomes_for("email") == ["delivered"]
    [envelope] = smtp_server.sink.envelopes
    assert envelope.mail_from == "risk@mev.test"
    assert sorted(envelope.rcpt_tos) == ["desk@mev.test", "oncall@mev.test"]
    text = envelope.content.decode()  # type: ignore[union-attr]
    assert "Subject: [MEV Risk][HIGH] [FIRING] VaR95Breach: VaR 95 is $12,500" in text
    assert "text/plain" in text and "text/html" in text
    assert "portfolio=alpha" in text


async def test_email_wrong_password_gives_up_without_retry(
    receiver: Receiver, smtp_server: SmtpPeer
) -> None:
    cfg = _config(receiver.url, smtp_server.port)
    bad_env = {**ENV, "SMTP_PASSWORD": "wrong"}
    cfg = cfg.model_copy(update={"channels": {**cfg.channels, "email": parse_config(
        {"channels": {"email": {**cfg.channels["email"].model_dump(
            exclude={"name", "password", "secret", "auth_token", "routing_key"}),
            "password_env": "SMTP_PASSWORD"}}}, bad_env).channels["email"]}})
    h = Harness(cfg)
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["email"]))
        await d.drain()
    assert h.outcomes_for("email") == ["gave_up"]
    assert h.outcomes[-1].status_code == 535
    assert "wrong" not in str(h.outcomes[-1])
    assert smtp_server.sink.envelopes == []


async def test_email_over_starttls(receiver: Receiver, starttls_smtp_server: SmtpPeer) -> None:
    cfg = _config(receiver.url, starttls_smtp_server.port,
                  email={"security": "starttls", "validate_certs": False})
    h = Harness(cfg)
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["email"]))
        await d.drain()
    assert h.outcomes_for("email") == ["delivered"]
    assert len(starttls_smtp_server.sink.envelopes) == 1


async def test_email_over_implicit_tls(
    receiver: Receiver, implicit_tls_smtp_server: SmtpPeer
) -> None:
    cfg = _config(receiver.url, implicit_tls_smtp_server.port,
                  email={"security": "tls", "validate_certs": False})
    h = Harness(cfg)
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["email"]))
        await d.drain()
    assert h.outcomes_for("email") == ["delivered"]
    assert len(implicit_tls_smtp_server.sink.envelopes) == 1


async def test_500_twice_then_200_delivers_once_after_three_attempts(
    receiver: Receiver,
) -> None:
    receiver.script["/hook"] = [500, 500]
    h = Harness(_config(receiver.url))
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["webhook"]))
        await d.drain()
    hooks = receiver.at("/hook")
    assert len(hooks) == 3
    assert {r.headers["Idempotency-Key"] for r in hooks} == {"evt-1"}
    assert h.outcomes_for("webhook") == ["failed", "failed", "delivered"]
    assert [o.attempt for o in h.outcomes] == [1, 2, 3]
    assert h.outcomes[0].status_code == 500 and h.outcomes[0].retry_in_secs == h.sleeps[0]
    assert h.sample("mevrisk_notification_attempts_total", channel="webhook") == 3.0
    assert h.sample("mevrisk_notifications_total", channel="webhook", outcome="failed") == 2.0
    assert h.sample("mevrisk_notifications_total", channel="webhook", outcome="delivered") == 1.0
    assert h.sample("mevrisk_notification_latency_seconds_count", channel="webhook") == 3.0
    rng = random.Random(7)
    backoff = Backoff(**FAST)
    assert h.sleeps == [backoff_delay(1, backoff, rng), backoff_delay(2, backoff, rng)]
    assert h.store["evt-1@webhook"] == {**h.store["evt-1@webhook"], "state": "delivered",
                                        "attempts": 3}


async def test_always_failing_channel_gives_up_at_max_attempts(receiver: Receiver) -> None:
    receiver.script["/slack"] = [503] * 10
    h = Harness(_config(receiver.url))
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["slack"]))
        await d.drain()
    assert h.outcomes_for("slack") == ["failed", "failed", "failed", "gave_up"]
    assert len(receiver.at("/slack")) == 4
    assert h.store["evt-1@slack"]["state"] == "gave_up"
    assert h.sample("mevrisk_notifications_total", channel="slack", outcome="gave_up") == 1.0


async def test_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.script["/pd"] = [400]
    h = Harness(_config(receiver.url))
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["pagerduty"]))
        await d.drain()
    assert h.outcomes_for("pagerduty") == ["gave_up"]
    assert h.outcomes[0].status_code == 400 and len(receiver.at("/pd")) == 1


async def test_429_is_retried(receiver: Receiver) -> None:
    receiver.script["/pd"] = [429]
    h = Harness(_config(receiver.url))
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["pagerduty"]))
        await d.drain()
    assert h.outcomes_for("pagerduty") == ["failed", "delivered"]


async def test_connection_refused_is_retried_then_given_up(receiver: Receiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    h = Harness(_config(receiver.url, webhook={"url": f"{dead}/hook", "max_attempts": 2}))
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["webhook"]))
        await d.drain()
    assert h.outcomes_for("webhook") == ["failed", "gave_up"]
    assert h.outcomes[0].error and "Connect" in h.outcomes[0].error


async def test_hanging_channel_times_out_and_does_not_delay_others(
    receiver: Receiver, smtp_server: SmtpPeer
) -> None:
    """No wall-clock upper bound: the other channels are done while the webhook still hangs (its
    timeout is far longer than they need), and the webhook gives up no earlier than its timeout."""
    receiver.script["/hook"] = ["hang"]
    timeout_secs = 3.0
    cfg = _config(receiver.url, smtp_server.port,
                  webhook={"timeout_secs": timeout_secs, "max_attempts": 1})
    h = Harness(cfg, real_sleep=True)
    loop = asyncio.get_running_loop()
    async with h.dispatcher as d:
        started = loop.time()
        await d.submit(make_event(channels=["webhook", "slack", "pagerduty", "email"]))
        while not {"slack", "pagerduty", "email"} <= {o.channel for o in h.outcomes}:
            assert h.outcomes_for("webhook") == [], "the others waited for the hanging webhook"
            await asyncio.sleep(0.01)
        assert h.outcomes_for("webhook") == []  # still hanging
        assert [r.path for r in receiver.at("/hook")] == ["/hook"]  # it was sent and is hanging
        await d.drain()
        elapsed = loop.time() - started
    assert h.outcomes_for("webhook") == ["gave_up"]
    assert h.outcomes_for("webhook") and "timeout" in (h.outcomes[-1].error or "")
    assert elapsed >= timeout_secs  # a lower bound: a timeout never fires early, however slow the box
    for channel in ("slack", "pagerduty", "email"):
        assert h.outcomes_for(channel) == ["delivered"]
    assert len(smtp_server.sink.envelopes) == 1


async def test_ledger_delivered_means_second_dispatch_sends_nothing(receiver: Receiver) -> None:
    store: dict[str, Any] = {}
    event = make_event(channels=["webhook", "slack"])
    first = Harness(_config(receiver.url), store)
    async with first.dispatcher as d:
        await d.submit(event)
        await d.drain()
        assert await d.submit(event) == []  # same process, replayed event
    assert len(receiver.requests) == 2

    second = Harness(_config(receiver.url), store)  # "restarted worker", same table
    async with second.dispatcher as d:
        assert await d.submit(event) == []
        await d.drain()
    assert len(receiver.requests) == 2
    assert second.outcomes == []


async def test_restart_resumes_pending_delivery_exactly_once(receiver: Receiver) -> None:
    store: dict[str, Any] = {}
    event = make_event(channels=["webhook"])
    receiver.script["/hook"] = ["hang"]
    crashed = Harness(_config(receiver.url), store)
    await crashed.dispatcher.start()
    await crashed.dispatcher.submit(event)
    await asyncio.wait_for(receiver.arrived.wait(), 2)
    await crashed.dispatcher.stop()  # the worker dies mid-delivery
    assert store["evt-1@webhook"]["state"] == "pending"
    assert crashed.outcomes == []

    restarted = Harness(_config(receiver.url), store)
    async with restarted.dispatcher as d:  # start() resumes pending deliveries
        assert await d.submit(event) == []  # replay of the uncommitted input: no duplicate
        await d.drain()
    assert restarted.outcomes_for("webhook") == ["delivered"]
    hooks = receiver.at("/hook")
    assert len(hooks) == 2  # the hung attempt, then the resumed one
    assert {r.headers["Idempotency-Key"] for r in hooks} == {"evt-1"}
    assert store["evt-1@webhook"]["state"] == "delivered"


async def test_grouped_burst_becomes_one_notification(receiver: Receiver) -> None:
    cfg = _config(receiver.url, grouping={"group_wait_secs": 30, "group_interval_secs": 300})
    h = Harness(cfg)
    t0 = 1_795_000_000_000
    async with h.dispatcher as d:
        for i in range(3):
            await d.submit(make_event(event_id=f"e{i}", id=f"a{i}", fingerprint=f"f{i}",
                                      ts_ms=t0 + i * 1000, channels=["webhook"]))
        assert await d.tick(t0 + 29_000) == []
        [batch] = await d.tick(t0 + 30_000)
        await d.drain()
    [hook] = receiver.at("/hook")
    body = orjson.loads(hook.body)
    assert body["event_ids"] == ["e0", "e1", "e2"] and len(body["alerts"]) == 3
    assert hook.headers["Idempotency-Key"] == batch.batch_id
    assert body["title"].startswith("[FIRING:3]")
    assert all(h.store[f"e{i}@webhook"]["state"] == "delivered" for i in range(3))


async def test_unknown_channel_is_recorded_not_silently_dropped(receiver: Receiver) -> None:
    h = Harness(_config(receiver.url))
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["pager-nope"]))
        await d.drain()
    assert [(o.channel, o.outcome, o.error) for o in h.outcomes] == [
        ("pager-nope", "gave_up", "unknown_channel")]
    assert h.sample("mevrisk_notifications_unroutable_total", reason="unknown_channel") == 1.0


async def test_invalid_event_raises_clear_error(receiver: Receiver) -> None:
    h = Harness(_config(receiver.url))
    async with h.dispatcher as d:
        with pytest.raises(InvalidAlertEvent, match="fingerprint"):
            await d.submit(make_event(fingerprint=""))
        with pytest.raises(InvalidAlertEvent, match="severity"):
            await d.submit(make_event(severity="urgent"))


async def test_full_queue_gives_up_visibly(receiver: Receiver) -> None:
    receiver.script["/hook"] = ["hang"]
    cfg = _config(receiver.url, webhook={"queue_size": 1, "timeout_secs": 0.3,
                                         "max_attempts": 1})
    h = Harness(cfg)
    async with h.dispatcher as d:
        for i in range(3):
            await d.submit(make_event(event_id=f"e{i}", channels=["webhook"]))
            await asyncio.sleep(0.05)  # let the worker take the first one
        await d.drain()
    outcomes = sorted((o.event_ids[0], o.outcome, o.error) for o in h.outcomes)
    assert ("e2", "gave_up", "queue full (1)") in outcomes
    assert len(outcomes) == 3


async def test_async_outcome_callback_is_awaited(receiver: Receiver) -> None:
    seen: list[dict[str, Any]] = []

    async def on_outcome(record: OutcomeRecord) -> None:
        await asyncio.sleep(0)
        seen.append(record.to_dict())

    d = Dispatcher(_config(receiver.url), registry=CollectorRegistry(), on_outcome=on_outcome)
    async with d:
        await d.submit(make_event(channels=["slack"]))
        await d.drain()
    [record] = seen
    assert record["outcome"] == "delivered" and record["event_ids"] == ["evt-1"]
    assert record["channel_type"] == "slack" and record["latency_secs"] > 0


async def test_pending_delivery_for_removed_channel_is_closed_on_resume(
    receiver: Receiver,
) -> None:
    store: dict[str, Any] = {}
    DeliveryLedger(store).mark_pending("old-1", "fax", make_event(event_id="old-1"), now_ms=1)
    h = Harness(_config(receiver.url), store)
    async with h.dispatcher:
        pass
    assert store["old-1@fax"]["state"] == "gave_up"
    assert [(o.channel, o.outcome, o.error) for o in h.outcomes] == [
        ("fax", "gave_up", "unknown_channel")]


async def test_outcome_record_carries_event_time(receiver: Receiver) -> None:
    h = Harness(_config(receiver.url))
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["slack"], ts_ms=1_795_000_123_456))
        await d.drain()
    [record] = h.outcomes
    assert record.event_ts_ms == 1_795_000_123_456 and record.batch_id == "evt-1"
    assert record.alert_ids == ("alert-1",) and record.fingerprints == ("fp-var95-alpha",)


async def test_fingerprint_keyed_ledger_resumes_and_deduplicates(receiver: Receiver) -> None:
    store: dict[str, Any] = {}
    event = make_event(channels=["webhook", "slack"])
    receiver.script["/hook"] = ["hang"]
    crashed = Harness(_config(receiver.url), store, by_fingerprint=True)
    await crashed.dispatcher.start()
    await crashed.dispatcher.submit(event)
    await asyncio.wait_for(receiver.arrived.wait(), 2)
    for _ in range(100):  # slack finishes, the webhook hangs
        if crashed.outcomes_for("slack"):
            break
        await asyncio.sleep(0.01)
    await crashed.dispatcher.stop()
    assert set(store) == {"fp-var95-alpha"}
    assert store["fp-var95-alpha"]["evt-1@slack"]["state"] == "delivered"
    assert store["fp-var95-alpha"]["evt-1@webhook"]["state"] == "pending"

    restarted = Harness(_config(receiver.url), store, by_fingerprint=True)
    async with restarted.dispatcher as d:
        assert await d.submit(event) == []
        await d.drain()
    assert restarted.outcomes_for("webhook") == ["delivered"]
    assert restarted.outcomes_for("slack") == []
    assert receiver.answered.count(("/slack", 200)) == 1
    assert receiver.answered.count(("/hook", 200)) == 1


async def test_resume_again_skips_what_this_process_holds(receiver: Receiver) -> None:
    """A rebalance calls resume() on a running dispatcher: only entries it does not hold yet
    (another worker's, handed over) are queued; its own in-flight deliveries are not doubled."""
    store: dict[str, Any] = {}
    receiver.script["/hook"] = ["hang"]
    h = Harness(_config(receiver.url), store, by_fingerprint=True)
    async with h.dispatcher as d:
        await d.submit(make_event(channels=["webhook"]))
        await asyncio.wait_for(receiver.arrived.wait(), 2)  # evt-1 is in flight, hung
        # the table recovers a partition a departed worker left with a pending delivery
        other = DeliveryLedger(store, by_fingerprint=True)
        handed = make_event(channels=["webhook"], event_id="evt-2", fingerprint="fp-other")
        other.mark_pending("evt-2", "webhook", handed, now_ms=1)
        resumed = await d.resume()
        assert [[e["event_id"] for e in b.events] for b in resumed] == [["evt-2"]]
        assert await d.resume() == []  # evt-2 is held now too
        await d.drain()
    keys = [r.headers["Idempotency-Key"] for r in receiver.at("/hook")]
    assert sorted(keys) == ["evt-1", "evt-1", "evt-2"]  # evt-1: the hung attempt, then its retry
    assert receiver.answered.count(("/hook", 200)) == 2
    assert sorted(h.outcomes_for("webhook")) == ["delivered", "delivered", "failed"]
