"""Request bodies for every channel (pure: no I/O, no clock, deterministic bytes).

Each builder turns a :class:`~agents.notify.model.Batch` and its channel config into
:class:`HttpRequest` objects (or an :class:`email.message.EmailMessage`). Headers
carrying credentials are excluded from ``repr`` so a logged request leaks nothing.
The only time-dependent part, the webhook signature's timestamp, is passed in
(``now_secs``); see :mod:`agents.notify.signing`.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from agents.notify.config import ChannelConfig, NotifyConfig
from agents.notify.errors import NotifyConfigError
from agents.notify.model import (
    AlertEvent,
    Batch,
    ends_at,
    labels_of,
    rule_name,
    summary_of,
)
from agents.notify.signing import signature_headers

SLACK_COLOURS = {
    "info": "#439FE0",
    "warning": "#ECB22E",
    "high": "#E8912D",
    "critical": "#E01E5A",
    "resolved": "#2EB67D",
}
PAGERDUTY_SEVERITY = {"info": "info", "warning": "warning", "high": "error", "critical": "critical"}
SMS_MAX_CHARS = 320
_SLACK_MAX_ALERTS = 10


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request to make; ``headers`` may hold credentials and stay out of repr."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    content_type: str = "application/json"


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def alert_url(config: NotifyConfig, event: AlertEvent) -> str:
    """Link to the alert on the dashboard."""
    return f"{config.dashboard_url.rstrip('/')}/alerts/{quote(str(event['id']), safe='')}"


def title(batch: Batch) -> str:
    """``[FIRING:2] VaR95Breach portfolio=alpha`` style one-liner."""
    alerts = batch.alerts
    head = f"[{batch.status.upper()}:{len(alerts)}]" if len(alerts) > 1 else \
        f"[{batch.status.upper()}]"
    if batch.kind == "digest":
        head = f"[DIGEST:{len(alerts)}]"
    names = sorted({rule_name(a) for a in alerts})
    keys = " ".join(f"{k}={v}" for k, v in batch.group_key if v and k != "alertname")
    text = f"{head} {', '.join(names)}"
    if len(alerts) == 1:
        text += f": {summary_of(alerts[0])}"
    return " ".join(f"{text} {keys}".split())  # one line: safe as a mail subject


def _alert_line(event: AlertEvent) -> str:
    return (f"{str(event['severity']).upper()} {event['transition']} {rule_name(event)}: "
            f"{summary_of(event)}")


# -- generic webhook -----------------------------------------------------------
def webhook_request(batch: Batch, channel: ChannelConfig, config: NotifyConfig, *,
                    now_secs: int) -> HttpRequest:
    """JSON body with every alert; idempotency key and, with a secret, the signature headers
    over ``now_secs.body`` (:mod:`agents.notify.signing`)."""
    body = _json({
        "version": "1",
        "idempotency_key": batch.batch_id,
        "channel": batch.channel,
        "kind": batch.kind,
        "status": batch.status,
        "severity": batch.max_severity,
        "title": title(batch),
        "group_key": dict(batch.group_key),
        "dashboard_url": config.dashboard_url,
        "event_ids": list(batch.event_ids),
        "alerts": [dict(a) for a in batch.alerts],
    })
    headers = {**channel.headers, "Idempotency-Key": batch.batch_id}
    if channel.secret is not None:
        headers.update(signature_headers(body, channel.secret.get_secret_value(), now_secs))
    if channel.url is None:  # the config validator requires it of an enabled channel
        raise NotifyConfigError(f"channel {channel.name!r} ({channel.type}) needs url")
    return HttpRequest("POST", channel.url, body, headers)


# -- Slack -------------------------------------------------------------------------
def slack_message(batch: Batch, config: NotifyConfig) -> dict[str, Any]:
    """Incoming-webhook message: fallback ``text``, ``blocks``, coloured attachment.

    Every field Slack reads as mrkdwn (``text``, the section, attachment ``title``
    and ``fallback``) has ``&``, ``<`` and ``>`` escaped, so text taken from an alert
    cannot form a link or a mention (``<!channel>``); the header block is plain text.
    """
    alerts = batch.alerts
    colour = SLACK_COLOURS["resolved" if batch.status == "resolved" else batch.max_severity]
    lines = [
        f"*<{alert_url(config, a)}|{mrkdwn_escape(rule_name(a))}>* "
        f"`{a['severity']}` {mrkdwn_escape(str(a['transition']))} — "
        f"{mrkdwn_escape(summary_of(a))}"
        for a in alerts[:_SLACK_MAX_ALERTS]
    ]
    if len(alerts) > _SLACK_MAX_ALERTS:
        lines.append(f"…and {len(alerts) - _SLACK_MAX_ALERTS} more")
    heading = title(batch)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": heading[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), 3000)}},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{config.dashboard_url}|Open the MEV Risk dashboard>"},
        ]},
    ]
    return {
        "text": mrkdwn_escape(heading),
        "blocks": blocks,
        "attachments": [{
            "color": colour,
            "fallback": mrkdwn_escape(heading),
            "title": mrkdwn_escape(heading[:150]),
            "title_link": alert_url(config, alerts[0]) if len(alerts) == 1 else
            config.dashboard_url,
            "fields": [{"title": "severity", "value": batch.max_severity, "short": True},
                       {"title": "status", "value": batch.status, "short": True}],
        }],
    }


def mrkdwn_escape(text: str) -> str:
    """Escape Slack's control characters ``&``, ``<``, ``>`` (in that order).

    >>> mrkdwn_escape("<!channel> P&L <http://x|y>")
    '&lt;!channel&gt; P&amp;L &lt;http://x|y&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters without splitting an ``&...;`` entity."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    amp = head.rfind("&", max(0, limit - 5))
    return head[:amp] if amp != -1 and ";" not in head[amp:] else head


def slack_request(batch: Batch, channel: ChannelConfig, config: NotifyConfig) -> HttpRequest:
    if channel.url is None:  # the config validator requires it of an enabled channel
        raise NotifyConfigError(f"channel {channel.name!r} ({channel.type}) needs url")
    return HttpRequest("POST", channel.url, _json(slack_message(batch, config)),
                       dict(channel.headers))


# -- email -------------------------------------------------------------------------
def email_message(batch: Batch, channel: ChannelConfig, config: NotifyConfig) -> EmailMessage:
    """Plain-text + HTML email to the channel's recipients."""
    alerts = batch.alerts
    msg = EmailMessage()
    msg["Subject"] = f"[MEV Risk][{batch.max_severity.upper()}] {title(batch)}"[:250]
    msg["From"] = channel.from_addr or ""
    msg["To"] = ", ".join(channel.to)
    msg["X-MevRisk-Idempotency-Key"] = batch.batch_id
    text_parts = [title(batch), ""]
    html_rows = []
    for a in alerts:
        ann = a.get("annotations") or {}
        labels = ", ".join(f"{k}={v}" for k, v in sorted(labels_of(a).items()))
        text_parts += [
            _alert_line(a),
            f"  {ann.get('description', '')}".rstrip(),
            f"  labels: {labels}",
            f"  started: {a.get('startsAt', '')}" + (f"  ended: {ends_at(a)}" if ends_at(a) else ""),
            f"  {alert_url(config, a)}",
            "",
        ]
        html_rows.append(
            "<tr>"
            f"<td>{html.escape(str(a['severity']).upper())}</td>"
            f"<td>{html.escape(str(a['transition']))}</td>"
            f"<td><a href=\"{html.escape(alert_url(config, a))}\">"
            f"{html.escape(rule_name(a))}</a></td>"
            f"<td>{html.escape(summary_of(a))}<br><small>{html.escape(labels)}</small></td>"
            "</tr>"
        )
    text_parts.append(f"Dashboard: {config.dashboard_url}")
    msg.set_content("\n".join(p for p in text_parts if p is not None))
    msg.add_alternative(
        "<html><body>"
        f"<h2>{html.escape(title(batch))}</h2>"
        "<table border=\"1\" cellpadding=\"4\"><tr><th>Severity</th><th>Transition</th>"
        f"<th>Rule</th><th>Summary</th></tr>{''.join(html_rows)}</table>"
        f"<p><a href=\"{html.escape(config.dashboard_url)}\">Open the dashboard</a></p>"
        "</body></html>",
        subtype="html",
    )
    return msg


# -- SMS (Twilio-compatible) -------------------------------------------------------
def sms_text(batch: Batch) -> str:
    alerts = batch.alerts
    text = f"MEV Risk {batch.max_severity.upper()}: {title(batch)}"
    if len(alerts) > 1:
        text += " | " + " | ".join(_alert_line(a) for a in alerts[:3])
    return text if len(text) <= SMS_MAX_CHARS else text[: SMS_MAX_CHARS - 1] + "…"


def sms_requests(batch: Batch, channel: ChannelConfig) -> list[HttpRequest]:
    """One form POST per recipient to ``{base_url}/2010-04-01/Accounts/{sid}/Messages.json``."""
    if not (channel.base_url and channel.account_sid and channel.auth_token):  # validated at config load
        raise NotifyConfigError(f"channel {channel.name!r} (sms) needs base_url, account_sid and auth_token")
    sid = channel.account_sid
    url = f"{channel.base_url.rstrip('/')}/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json"
    token = channel.auth_token.get_secret_value()
    auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
    headers = {**channel.headers, "Authorization": f"Basic {auth}"}
    body_text = sms_text(batch)
    return [
        HttpRequest(
            "POST", url,
            urlencode({"To": to, "From": channel.from_number, "Body": body_text}).encode(),
            {**headers, "Idempotency-Key": f"{batch.batch_id}/{to}"},
            content_type="application/x-www-form-urlencoded",
        )
        for to in channel.to
    ]


# -- PagerDuty Events API v2 -------------------------------------------------------
def pagerduty_action(event: AlertEvent) -> str | None:
    """trigger / acknowledge / resolve, or None for transitions PagerDuty ignores."""
    if event.get("status") == "resolved" or event.get("transition") == "resolved":
        return "resolve"
    if event.get("transition") == "acknowledged":
        return "acknowledge"
    if event.get("transition") in ("firing", "repeat", "escalated"):
        return "trigger"
    return None


def pagerduty_event(event: AlertEvent, channel: ChannelConfig, config: NotifyConfig
                    ) -> dict[str, Any] | None:
    """Events API v2 body with ``dedup_key`` = the alert fingerprint."""
    action = pagerduty_action(event)
    if action is None:
        return None
    if channel.routing_key is None:  # the config validator requires it of an enabled channel
        raise NotifyConfigError(f"channel {channel.name!r} ({channel.type}) needs routing_key")
    body: dict[str, Any] = {
        "routing_key": channel.routing_key.get_secret_value(),
        "event_action": action,
        "dedup_key": str(event["fingerprint"]),
    }
    if action == "trigger":
        labels = labels_of(event)
        body["payload"] = {
            "summary": f"[{str(event['severity']).upper()}] {rule_name(event)}: "
                       f"{summary_of(event)}"[:1024],
            "severity": PAGERDUTY_SEVERITY[str(event["severity"])],
            "source": channel.source,
            "timestamp": event.get("startsAt") or None,
            "component": labels.get("strategy") or labels.get("portfolio"),
            "group": labels.get("portfolio"),
            "class": str(event.get("rule") or rule_name(event)),
            "custom_details": {
                "alert_id": event["id"],
                "event_id": event["event_id"],
                "transition": event["transition"],
                "escalation_level": event.get("escalation_level", 0),
                "labels": labels,
                "annotations": dict(event.get("annotations") or {}),
                "values": dict(event.get("values") or {}),
            },
        }
        body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
        body["links"] = [{"href": alert_url(config, event), "text": "MEV Risk dashboard"}]
    return body


def pagerduty_requests(batch: Batch, channel: ChannelConfig, config: NotifyConfig
                       ) -> list[HttpRequest]:
    """One Events API call per event (PagerDuty dedups by fingerprint itself)."""
    if channel.url is None:  # the config validator requires it of an enabled channel
        raise NotifyConfigError(f"channel {channel.name!r} ({channel.type}) needs url")
    out = []
    for event in batch.events:
        body = pagerduty_event(event, channel, config)
        if body is not None:
            out.append(HttpRequest("POST", channel.url, _json(body), dict(channel.headers)))
    return out


# -- Alertmanager API v2 -----------------------------------------------------------
def _label_name(name: str) -> str:
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return clean if clean and not clean[0].isdigit() else f"_{clean}"


def alertmanager_alert(event: AlertEvent, config: NotifyConfig) -> dict[str, Any]:
    """``postableAlert``: labels, annotations, startsAt, endsAt (when resolved), generatorURL."""
    labels = {_label_name(k): v for k, v in labels_of(event).items() if v != ""}
    annotations = {_label_name(str(k)): str(v) for k, v in
                   (event.get("annotations") or {}).items()}
    if event.get("message") and "message" not in annotations:
        annotations["message"] = str(event["message"])
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "generatorURL": alert_url(config, event),
    }
    if event.get("startsAt") and event["startsAt"] != "0001-01-01T00:00:00Z":
        alert["startsAt"] = event["startsAt"]
    end = ends_at(event)
    if event.get("status") == "resolved" and end:
        alert["endsAt"] = end
    return alert


def alertmanager_request(batch: Batch, channel: ChannelConfig, config: NotifyConfig
                         ) -> HttpRequest:
    """``POST {base_url}/api/v2/alerts`` with every event's latest state."""
    if channel.base_url is None:  # the config validator requires it of an enabled channel
        raise NotifyConfigError(f"channel {channel.name!r} ({channel.type}) needs base_url")
    body = _json([alertmanager_alert(a, config) for a in batch.alerts])
    return HttpRequest("POST", f"{channel.base_url.rstrip('/')}/api/v2/alerts", body,
                       dict(channel.headers))


def http_requests(batch: Batch, channel: ChannelConfig, config: NotifyConfig, *,
                  now_secs: int) -> list[HttpRequest]:
    """The HTTP calls one delivery of ``batch`` makes on an HTTP channel at ``now_secs``
    (wall-clock Unix seconds, for the webhook signature)."""
    if channel.type == "webhook":
        return [webhook_request(batch, channel, config, now_secs=now_secs)]
    if channel.type == "slack":
        return [slack_request(batch, channel, config)]
    if channel.type == "sms":
        return sms_requests(batch, channel)
    if channel.type == "pagerduty":
        return pagerduty_requests(batch, channel, config)
    if channel.type == "alertmanager":
        return [alertmanager_request(batch, channel, config)]
    raise ValueError(f"{channel.type} is not an HTTP channel")
