"""Issue 12 item 7, the notification parts: one regression test per hardening item, against real
loopback HTTP peers (aiohttp servers on 127.0.0.1) and the real dispatcher.

* the webhook signature covers ``timestamp.body`` with the timestamp in ``X-MevRisk-Timestamp``;
* Slack ``text`` and ``title`` carry ``&``, ``<``, ``>`` escaped;
* a date-form ``Retry-After`` (RFC 9110 HTTP-date) sets the retry delay;
* ``http://`` is refused for channels carrying credentials unless ``allow_insecure: true``;
* no secret and no ``Authorization`` value reaches a log line.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from agents.notify.config import NotifyConfig, parse_config
from agents.notify.delivery import Dispatcher, OutcomeRecord
from agents.notify.errors import NotifyConfigError
from agents.notify.signing import verify
from streams import logsafe
from tests.unit.notify.conftest import receiver
from tests.unit.notify.helpers import Receiver, make_event

__all__ = ["receiver"]  # the recording HTTP peer of the notification unit tests

SECRET = "whsec-security-7f3a9c"
SMS_SID, SMS_TOKEN = "AC-security", "sms-token-9d8e7f"
PD_KEY = "pd-routing-key-5b6c7d"
SLACK_PATH = "/services/T000/B000/slack-secret-path-42"
AM_BEARER = "am-bearer-token-1a2b3c"
FAST = {"initial_secs": 0.01, "multiplier": 2, "max_secs": 0.05, "jitter": 0}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def peer() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a loopback aiohttp server answering every path with the given handler; returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        # access_log=None: the peer's own access log would show the Slack path; ours has none either
        runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def _dispatcher(config: NotifyConfig, outcomes: list[OutcomeRecord], sleeps: list[float] | None = None,
                clock_ms: Callable[[], int] | None = None) -> Dispatcher:
    async def sleep(secs: float) -> None:
        if sleeps is not None:
            sleeps.append(secs)
        await asyncio.sleep(0)

    extra: dict[str, Any] = {"clock_ms": clock_ms} if clock_ms else {}
    return Dispatcher(config, registry=CollectorRegistry(), on_outcome=outcomes.append, sleep=sleep,
                      seed=1, **extra)


# -- webhook signature over timestamp.body ---------------------------------------------------------
async def test_webhook_signature_covers_timestamp_and_body(receiver: Receiver) -> None:
    config = parse_config({"channels": {"webhook": {
        "type": "webhook", "url": f"{receiver.url}/hook", "secret_env": "S", "allow_insecure": True,
        "grouping": False}}}, {"S": SECRET})
    outcomes: list[OutcomeRecord] = []
    before = int(time.time())
    async with _dispatcher(config, outcomes) as d:
        await d.submit(make_event(channels=["webhook"]))
        await d.drain()
    [hook] = receiver.at("/hook")
    headers = {k.lower(): v for k, v in hook.headers.items()}
    stamp = headers["x-mevrisk-timestamp"]
    assert before <= int(stamp) <= int(time.time())
    mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + hook.body, hashlib.sha256).hexdigest()
    assert headers["x-mevrisk-signature"] == f"sha256={mac}"
    # what a receiver does: verify inside the replay window, refuse the same request replayed later
    assert verify(hook.body, SECRET, headers["x-mevrisk-signature"], stamp, now_secs=time.time())
    assert not verify(hook.body, SECRET, headers["x-mevrisk-signature"], stamp,
                      now_secs=int(stamp) + 301)
    # the timestamp cannot be swapped: the signature binds it
    assert not verify(hook.body, SECRET, headers["x-mevrisk-signature"], str(int(stamp) + 1),
                      now_secs=time.time())


# -- Slack escaping -------------------------------------------------------------------------------
async def test_slack_text_and_title_are_escaped(receiver: Receiver) -> None:
    config = parse_config({"channels": {"slack": {
        "type": "slack", "url": f"{receiver.url}/slack", "allow_insecure": True,
        "grouping": False}}}, {})
    hostile = "<!channel> P&L <https://evil.test|click here>"
    event = make_event(channels=["slack"], rule_name=hostile, annotations={"summary": hostile},
                       transition="<!here>")
    outcomes: list[OutcomeRecord] = []
    async with _dispatcher(config, outcomes) as d:
        await d.submit(event)
        await d.drain()
    [post] = receiver.at("/slack")
    message = orjson.loads(post.body)
    attachment = message["attachments"][0]
    section = message["blocks"][1]["text"]["text"]
    for text in (message["text"], attachment["title"], attachment["fallback"]):
        assert "&lt;!channel&gt; P&amp;L &lt;https://evil.test|click here&gt;" in text
        assert "<" not in text and ">" not in text
    # the section keeps only the engine's own link; the alert's text is inert
    assert "<!channel>" not in section and "<!here>" not in section
    assert "<https://evil.test" not in section and "&lt;!here&gt;" in section


# -- date-form Retry-After ------------------------------------------------------------------------
async def test_retry_after_http_date_sets_the_delay(peer: Callable[[Handler], Awaitable[str]]) -> None:
    now_ms = 1_800_000_000_000
    answers: list[int] = []

    async def busy_then_ok(request: web.Request) -> web.Response:
        await request.read()
        if not answers:
            answers.append(503)
            later = datetime.fromtimestamp(now_ms / 1000 + 40, tz=UTC)
            return web.Response(status=503, headers={"Retry-After": format_datetime(later, usegmt=True)})
        answers.append(200)
        return web.Response(status=200)

    url = await peer(busy_then_ok)
    config = parse_config({"channels": {"hook": {
        "type": "webhook", "url": f"{url}/hook", "grouping": False, "max_attempts": 3,
        "backoff": {"initial_secs": 0.01, "multiplier": 2, "max_secs": 120, "jitter": 0}}}}, {})
    outcomes: list[OutcomeRecord] = []
    sleeps: list[float] = []
    async with _dispatcher(config, outcomes, sleeps, clock_ms=lambda: now_ms) as d:
        await d.submit(make_event(channels=["hook"]))
        await d.drain()
    assert answers == [503, 200]
    assert [o.outcome for o in outcomes] == ["failed", "delivered"]
    assert sleeps == [pytest.approx(40.0)]  # the date, not the 0.01 s backoff step
    assert outcomes[0].retry_in_secs == pytest.approx(40.0)


# -- no credentials over http:// ------------------------------------------------------------------
@pytest.mark.parametrize(("channel", "env", "what"), [
    ({"type": "webhook", "url": "http://hooks.test/h", "secret_env": "V"}, {"V": SECRET},
     "signing secret"),
    ({"type": "slack", "url_env": "V"}, {"V": f"http://hooks.slack.test{SLACK_PATH}"},
     "Slack webhook URL"),
    ({"type": "sms", "base_url": "http://sms.test", "account_sid": SMS_SID, "auth_token_env": "V",
      "from_number": "+1", "to": ["+2"]}, {"V": SMS_TOKEN}, "basic auth"),
    ({"type": "pagerduty", "url": "http://pd.test/enqueue", "routing_key_env": "V"}, {"V": PD_KEY},
     "routing key"),
    ({"type": "alertmanager", "base_url": "http://am.test",
      "headers": {"Authorization": f"Bearer {AM_BEARER}"}}, {}, "credential headers"),
    ({"type": "webhook", "url": f"http://user:{SECRET}@hooks.test/h"}, {}, "basic auth in the URL"),
    ({"type": "email", "host": "mail.test", "security": "none", "from_addr": "a@test",
      "to": ["b@test"], "username": "u", "password_env": "V"}, {"V": SECRET}, "SMTP password"),
])
def test_credentials_over_plain_http_are_refused(channel: dict[str, Any], env: dict[str, str],
                                                 what: str) -> None:
    with pytest.raises(NotifyConfigError) as refused:
        parse_config({"channels": {"ch": channel}}, env)
    message = str(refused.value)
    assert what in message and "allow_insecure: true" in message and "'ch'" in message
    for secret in (SECRET, SMS_TOKEN, PD_KEY, SLACK_PATH, AM_BEARER):
        assert secret not in message
    allowed = parse_config({"channels": {"ch": {**channel, "allow_insecure": True}}}, env)
    assert allowed.channels["ch"].enabled and allowed.channels["ch"].allow_insecure


def test_https_and_credential_free_http_channels_are_accepted() -> None:
    config = parse_config({"channels": {
        "signed": {"type": "webhook", "url": "https://hooks.test/h", "secret_env": "V"},
        "plain": {"type": "webhook", "url": "http://hooks.test/plain"},
        "am": {"type": "alertmanager", "base_url": "http://am.test"},
        "off": {"type": "webhook", "url": "http://hooks.test/off", "secret_env": "W",
                "enabled": "auto"},
    }}, {"V": SECRET})
    assert {n for n, c in config.channels.items() if c.enabled} == {"signed", "plain", "am"}


# -- no secret or Authorization header in any log line --------------------------------------------
async def test_no_secret_in_notification_logs(peer: Callable[[Handler], Awaitable[str]],
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A peer that echoes the request (headers and body) in its error answer: the dispatcher's log
    lines (failures, give-ups) must not carry any channel credential."""

    async def echo_500(request: web.Request) -> web.Response:
        body = await request.read()
        echoed = f"{dict(request.headers)} {request.path_qs} {body.decode(errors='replace')}"
        return web.Response(status=500, text=echoed)

    url = await peer(echo_500)
    config = parse_config({
        "defaults": {"allow_insecure": True, "max_attempts": 2, "backoff": FAST, "grouping": False},
        "channels": {
            "webhook": {"type": "webhook", "url": f"{url}/hook", "secret_env": "HOOK"},
            "slack": {"type": "slack", "url_env": "SLACK"},
            "sms": {"type": "sms", "base_url": url, "account_sid": SMS_SID, "auth_token_env": "SMS",
                    "from_number": "+1", "to": ["+2"]},
            "pagerduty": {"type": "pagerduty", "url": f"{url}/pd", "routing_key_env": "PD"},
            "am": {"type": "alertmanager", "base_url": url,
                   "headers": {"Authorization": f"Bearer {AM_BEARER}"}},
        }}, {"HOOK": SECRET, "SLACK": f"{url}{SLACK_PATH}", "SMS": SMS_TOKEN, "PD": PD_KEY})
    outcomes: list[OutcomeRecord] = []
    caplog.set_level(logging.DEBUG)
    async with _dispatcher(config, outcomes) as d:
        await d.submit(make_event(severity="critical",
                                  channels=["webhook", "slack", "sms", "pagerduty", "am"]))
        await d.drain()
    gave_up = {o.channel for o in outcomes if o.outcome == "gave_up"}
    assert gave_up == {"webhook", "slack", "sms", "pagerduty", "am"}
    assert any("gave up" in r.getMessage() for r in caplog.records)
    basic = base64.b64encode(f"{SMS_SID}:{SMS_TOKEN}".encode()).decode()
    logged = caplog.text + "".join(str(o.error) for o in outcomes)
    for secret in (SECRET, SMS_TOKEN, basic, PD_KEY, SLACK_PATH, AM_BEARER):
        assert secret not in logged, f"{secret[:6]}… logged"


async def test_no_authorization_header_in_web_layer_logs(
        peer: Callable[[Handler], Awaitable[str]], caplog: pytest.LogCaptureFixture) -> None:
    """The API logs a failed forward to a peer with ``%r`` of the aiohttp error, whose request info
    holds the forwarded headers; with the worker's log masking installed nothing of them is logged."""

    async def unauthorized(request: web.Request) -> web.Response:
        return web.Response(status=401)

    url = await peer(unauthorized)
    api_token = "api-admin-token-0f9e8d7c"
    previous = logging.getLogRecordFactory()
    logsafe.install()
    try:
        logsafe.register_secrets([api_token])
        caplog.set_level(logging.DEBUG)
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(f"{url}/api/v1/alerts", raise_for_status=True, headers={
                        "Authorization": f"Bearer {api_token}", "X-Other": "kept"}):
                    pass
            except aiohttp.ClientResponseError as exc:
                assert "Authorization" in repr(exc.request_info)  # what a careless log line shows
                logging.getLogger("streams.api.views").warning(
                    "forwarding %s %s to %s failed: %r", "POST", "/api/v1/alerts", url, exc)
                logging.getLogger("streams.api.views").warning(
                    "peer answered %s", {"Authorization": "Basic dXNlcjpwYXNz"})
                try:
                    raise RuntimeError(f"token {api_token} refused")
                except RuntimeError:
                    logging.getLogger("agents.notify.delivery").exception("transport raised")
    finally:
        logging.setLogRecordFactory(previous)
        logsafe.uninstall()
    text = caplog.text
    assert "forwarding POST" in text and "transport raised" in text and "RuntimeError" in text
    for secret in (api_token, "dXNlcjpwYXNz", f"Bearer {api_token}"):
        assert secret not in text
    assert "'Authorization': '***'" in text
