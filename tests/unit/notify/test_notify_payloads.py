"""Payload builders: exact shapes each peer's API expects."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest

from agents.notify import payloads
from agents.notify.config import NotifyConfig, parse_config
from agents.notify.model import Batch
from tests.unit.notify.helpers import PD_KEY, SECRET, SMS_SID, SMS_TOKEN, make_event


def _config() -> NotifyConfig:
    return parse_config({
        "dashboard_url": "http://dash.test/dashboard",
        "defaults": {"allow_insecure": True},  # plain http:// test peers
        "channels": {
            "webhook": {"type": "webhook", "url": "http://r.test/hook",
                        "secret_env": "HOOK_SECRET"},
            "slack": {"type": "slack", "url": "http://r.test/slack"},
            "email": {"type": "email", "host": "127.0.0.1", "from_addr": "risk@test",
                      "to": ["a@test", "b@test"]},
            "sms": {"type": "sms", "base_url": "http://r.test/sms/", "account_sid": SMS_SID,
                    "auth_token_env": "SMS_TOKEN", "from_number": "+100",
                    "to": ["+201", "+202"]},
            "pagerduty": {"type": "pagerduty", "url": "http://r.test/pd",
                          "routing_key_env": "PD_KEY"},
            "alertmanager": {"type": "alertmanager", "base_url": "http://am.test/"},
        },
    }, {"HOOK_SECRET": SECRET, "SMS_TOKEN": SMS_TOKEN, "PD_KEY": PD_KEY})


CFG = _config()


def _batch(channel: str, *events: dict[str, Any], kind: str = "single") -> Batch:
    return Batch.of(channel, events or [make_event()], kind=kind,  # type: ignore[arg-type]
                    flush_ms=1, group_key=(("alertname", "VaR95Breach"), ("portfolio", "alpha")))


NOW_S = 1_795_000_100


def test_webhook_signature_verifies_with_shared_secret() -> None:
    req = payloads.webhook_request(_batch("webhook"), CFG.channels["webhook"], CFG, now_secs=NOW_S)
    signed = f"{NOW_S}.".encode() + req.body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert req.headers["X-MevRisk-Timestamp"] == str(NOW_S)
    assert req.headers["X-MevRisk-Signature"] == f"sha256={expected}"
    assert req.headers["Idempotency-Key"] == "evt-1"
    body = orjson.loads(req.body)
    assert body["alerts"][0]["fingerprint"] == "fp-var95-alpha"
    assert body["event_ids"] == ["evt-1"] and body["status"] == "firing"
    assert SECRET not in repr(req)


def test_webhook_body_is_deterministic() -> None:
    a = payloads.webhook_request(_batch("webhook"), CFG.channels["webhook"], CFG, now_secs=NOW_S)
    b = payloads.webhook_request(_batch("webhook"), CFG.channels["webhook"], CFG, now_secs=NOW_S)
    assert a.body == b.body and a.headers == b.headers


def test_group_batch_has_stable_idempotency_key() -> None:
    e1, e2 = make_event(), make_event(event_id="evt-2", id="alert-2", fingerprint="fp-2")
    key1 = _batch("webhook", e1, e2, kind="group").batch_id
    key2 = _batch("webhook", e2, e1, kind="group").batch_id
    assert key1 == key2 and key1.startswith("group-")


def test_slack_message_has_text_blocks_colour_and_link() -> None:
    msg = payloads.slack_message(_batch("slack", make_event(severity="critical")), CFG)
    assert "VaR95Breach" in msg["text"]
    assert [b["type"] for b in msg["blocks"]] == ["header", "section", "context"]
    assert msg["attachments"][0]["color"] == payloads.SLACK_COLOURS["critical"]
    assert "http://dash.test/dashboard/alerts/alert-1" in msg["blocks"][1]["text"]["text"]
    resolved = payloads.slack_message(
        _batch("slack", make_event(status="resolved", transition="resolved")), CFG)
    assert resolved["attachments"][0]["color"] == payloads.SLACK_COLOURS["resolved"]


def test_slack_escapes_mrkdwn_control_characters() -> None:
    ev = make_event(annotations={"summary": "a <b> & c"})
    text = payloads.slack_message(_batch("slack", ev), CFG)["blocks"][1]["text"]["text"]
    assert "a &lt;b&gt; &amp; c" in text


def test_email_has_subject_recipients_text_and_html() -> None:
    msg = payloads.email_message(_batch("email"), CFG.channels["email"], CFG)
    assert msg["Subject"].startswith("[MEV Risk][HIGH] [FIRING] VaR95Breach")
    assert msg["To"] == "a@test, b@test" and msg["From"] == "risk@test"
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "VaR 95 is $12,500" in plain and "portfolio=alpha" in plain
    assert "<table" in html and "http://dash.test/dashboard/alerts/alert-1" in html


def test_email_html_escapes_alert_text() -> None:
    ev = make_event(annotations={"summary": "<script>x</script>"})
    msg = payloads.email_message(_batch("email", ev), CFG.channels["email"], CFG)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_sms_is_twilio_form_post_per_recipient_with_basic_auth() -> None:
    reqs = payloads.sms_requests(_batch("sms"), CFG.channels["sms"])
    assert [r.url for r in reqs] == [
        f"http://r.test/sms/2010-04-01/Accounts/{SMS_SID}/Messages.json"] * 2
    form = parse_qs(reqs[0].body.decode())
    assert form["To"] == ["+201"] and form["From"] == ["+100"]
    assert "VaR95Breach" in form["Body"][0]
    assert len(form["Body"][0]) <= payloads.SMS_MAX_CHARS
    user, _, token = base64.b64decode(reqs[0].headers["Authorization"][6:]).decode().partition(":")
    assert (user, token) == (SMS_SID, SMS_TOKEN)
    assert reqs[0].content_type == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("transition", "status", "action"),
    [("firing", "firing", "trigger"), ("escalated", "firing", "trigger"),
     ("repeat", "firing", "trigger"), ("acknowledged", "firing", "acknowledge"),
     ("resolved", "resolved", "resolve")],
)
def test_pagerduty_actions_and_dedup_key(transition: str, status: str, action: str) -> None:
    ev = make_event(transition=transition, status=status, severity="critical")
    body = payloads.pagerduty_event(ev, CFG.channels["pagerduty"], CFG)
    assert body is not None
    assert body["event_action"] == action
    assert body["dedup_key"] == "fp-var95-alpha" and body["routing_key"] == PD_KEY
    if action == "trigger":
        assert body["payload"]["severity"] == "critical"
        assert body["payload"]["source"] == "mev-risk-stream"
        assert body["payload"]["summary"].startswith("[CRITICAL] VaR95Breach")
    else:
        assert "payload" not in body


def test_pagerduty_maps_high_to_error() -> None:
    body = payloads.pagerduty_event(make_event(severity="high"), CFG.channels["pagerduty"], CFG)
    assert body is not None and body["payload"]["severity"] == "error"


def test_alertmanager_firing_alert_shape() -> None:
    req = payloads.alertmanager_request(_batch("alertmanager"), CFG.channels["alertmanager"], CFG)
    assert req.url == "http://am.test/api/v2/alerts"
    [alert] = orjson.loads(req.body)
    assert set(alert) == {"labels", "annotations", "startsAt", "generatorURL"}
    assert alert["labels"] == {"alertname": "VaR95Breach", "portfolio": "alpha",
                               "strategy": "arb-1", "severity": "high"}
    assert alert["annotations"]["summary"].startswith("VaR 95")
    assert alert["generatorURL"] == "http://dash.test/dashboard/alerts/alert-1"


def test_alertmanager_resolved_alert_sends_ends_at() -> None:
    ev = make_event(status="resolved", transition="resolved", endsAt="2026-11-27T10:05:00Z")
    alert = payloads.alertmanager_alert(ev, CFG)
    assert alert["endsAt"] == "2026-11-27T10:05:00Z"


def test_alertmanager_label_names_are_sanitised() -> None:
    ev = make_event(labels={"alertname": "X", "pool-id": "0xab", "9lives": "y"})
    labels = payloads.alertmanager_alert(ev, CFG)["labels"]
    assert labels["pool_id"] == "0xab" and labels["_9lives"] == "y"


def test_newlines_in_alert_text_cannot_inject_mail_headers() -> None:
    ev = make_event(annotations={"summary": "x\r\nBcc: evil@test"},
                    labels={"alertname": "A", "portfolio": "p\nq"})
    msg = payloads.email_message(_batch("email", ev), CFG.channels["email"], CFG)
    assert msg["Bcc"] is None and "\n" not in msg["Subject"]
    assert "x Bcc: evil@test" in msg["Subject"]
