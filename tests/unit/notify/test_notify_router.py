"""Routing, grouping, digests and rate limits, all on event time."""

from __future__ import annotations

from typing import Any

from agents.notify.config import NotifyConfig, parse_config
from agents.notify.router import Router
from tests.unit.notify.helpers import make_event

T0 = 1_795_000_000_000
SEC = 1000


def _config(**extra: Any) -> NotifyConfig:
    data: dict[str, Any] = {
        "defaults": {"allow_insecure": True},  # plain http:// test URLs
        "channels": {
            "slack": {"type": "slack", "url": "http://x/slack"},
            "email": {"type": "email", "host": "h", "from_addr": "f@x", "to": ["t@x"]},
            "pagerduty": {"type": "pagerduty", "url": "http://x/pd", "routing_key_env": "K"},
            "off": {"type": "webhook", "url": "http://x/off", "enabled": False},
        },
        "routes": [
            {"severities": ["critical"], "channels": ["pagerduty"]},
            {"match": {"portfolio": "beta"}, "channels": ["email"]},
        ],
        "grouping": {"group_by": ["alertname", "portfolio"], "group_wait_secs": 30,
                     "group_interval_secs": 300},
        "digest": {"severities": ["info", "warning"], "transitions": ["repeat"],
                   "interval_secs": 3600},
    }
    data.update(extra)
    return parse_config(data, {"K": "key"})


def _ev(n: int, t_ms: int, **kw: Any) -> dict[str, Any]:
    base = {"event_id": f"e{n}", "id": f"a{n}", "fingerprint": f"f{n}", "ts_ms": t_ms,
            "channels": ["slack"]}
    return make_event(**{**base, **kw})


def test_channels_are_event_channels_plus_matching_routes() -> None:
    r = Router(_config())
    ev = _ev(1, T0, severity="critical", channels=["slack", "nope", "off"],
             labels={"alertname": "X", "portfolio": "beta"})
    d = r.channels_for(ev)
    assert d.channels == ("slack", "pagerduty", "email")
    assert d.unknown == ("nope",) and d.disabled == ("off",)


def test_silenced_or_inhibited_events_go_nowhere() -> None:
    r = Router(_config())
    assert r.channels_for(_ev(1, T0, notify=False)).channels == ()
    assert r.channels_for(_ev(1, T0, transition="silenced")).channels == ()


def test_route_can_match_severity_and_label_together() -> None:
    cfg = _config(routes=[{"match": {"strategy": "arb-1"}, "severities": ["high"],
                           "channels": ["email"]}])
    r = Router(cfg)
    assert "email" in r.channels_for(_ev(1, T0, severity="high")).channels
    assert "email" not in r.channels_for(_ev(1, T0, severity="warning")).channels


def test_group_wait_collects_a_burst_into_one_batch() -> None:
    r = Router(_config())
    assert r.ingest(_ev(1, T0), ["slack"]) == []
    assert r.ingest(_ev(2, T0 + 10 * SEC), ["slack"]) == []
    assert r.tick(T0 + 29 * SEC) == []
    [batch] = r.tick(T0 + 30 * SEC)
    assert batch.event_ids == ("e1", "e2") and batch.kind == "group"
    assert batch.group_key == (("alertname", "VaR95Breach"), ("portfolio", "alpha"))
    assert batch.flush_ms == T0 + 30 * SEC


def test_group_interval_spaces_later_notifications() -> None:
    r = Router(_config())
    r.ingest(_ev(1, T0), ["slack"])
    assert len(r.tick(T0 + 30 * SEC)) == 1
    assert r.ingest(_ev(2, T0 + 60 * SEC), ["slack"]) == []
    assert r.tick(T0 + 329 * SEC) == []
    [batch] = r.tick(T0 + 330 * SEC)
    assert batch.event_ids == ("e2",) and batch.kind == "single"


def test_different_groups_flush_separately() -> None:
    r = Router(_config())
    r.ingest(_ev(1, T0), ["slack"])
    r.ingest(_ev(2, T0, labels={"alertname": "VaR95Breach", "portfolio": "beta"}), ["slack"])
    batches = r.tick(T0 + 30 * SEC)
    assert sorted(b.event_ids for b in batches) == [("e1",), ("e2",)]


def test_same_input_gives_same_batches() -> None:
    events = [_ev(i, T0 + i * 7 * SEC, labels={"alertname": "R", "portfolio": f"p{i % 3}"})
              for i in range(20)]

    def run() -> list[tuple[str, ...]]:
        r = Router(_config())
        out = []
        for ev in events:
            out += [b.event_ids for b in r.ingest(ev, ["slack"])]
        out += [b.event_ids for b in r.tick(T0 + 3600 * SEC)]
        return out

    assert run() == run()


def test_ungrouped_channel_sends_immediately() -> None:
    r = Router(_config())
    [batch] = r.ingest(_ev(1, T0, severity="critical"), ["pagerduty"])
    assert batch.channel == "pagerduty" and batch.kind == "single"


def test_repeated_low_severity_alerts_form_a_digest() -> None:
    r = Router(_config())
    for i in range(5):
        out = r.ingest(_ev(i, T0 + i * 60 * SEC, severity="warning", transition="repeat",
                           fingerprint="same"), ["slack"])
        assert out == []
    [digest] = r.tick(T0 + 3600 * SEC)
    assert digest.kind == "digest" and len(digest.events) == 5
    assert len(digest.alerts) == 1  # latest state per fingerprint


def test_high_severity_repeat_is_not_digested() -> None:
    r = Router(_config())
    r.ingest(_ev(1, T0, severity="high", transition="repeat"), ["slack"])
    [batch] = r.tick(T0 + 30 * SEC)
    assert batch.kind == "single"


def test_rate_limit_holds_then_merges_never_drops() -> None:
    cfg = _config(grouping={"group_wait_secs": 0, "group_interval_secs": 0,
                            "group_by": ["alertname", "portfolio"]})
    cfg = cfg.model_copy(update={"channels": {
        **cfg.channels,
        "pagerduty": cfg.channels["pagerduty"].model_copy(update={"rate_limit_per_minute": 2}),
    }})
    r = Router(cfg)
    sent = []
    for i in range(5):
        sent += r.ingest(_ev(i, T0 + i * SEC, severity="critical"), ["pagerduty"])
    assert [b.event_ids for b in sent] == [("e0",), ("e1",)]
    assert r.held_count("pagerduty") == 3
    assert r.tick(T0 + 59 * SEC) == []
    [merged] = r.tick(T0 + 60 * SEC)
    assert merged.event_ids == ("e2", "e3", "e4")
    assert r.held_count("pagerduty") == 0


def test_zero_group_wait_flushes_on_ingest() -> None:
    cfg = _config(grouping={"group_wait_secs": 0, "group_interval_secs": 0})
    r = Router(cfg)
    [batch] = r.ingest(_ev(1, T0), ["slack", "email"])[:1]
    assert batch.event_ids == ("e1",)


def test_idle_groups_are_forgotten() -> None:
    r = Router(_config())
    r.ingest(_ev(1, T0), ["slack"])
    r.tick(T0 + 30 * SEC)
    r.tick(T0 + 10_000 * SEC)
    assert r._groups == {}
