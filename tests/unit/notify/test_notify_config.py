"""channels.yaml parsing: typed, frozen, secrets from the environment and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agents.notify.config import NotifyConfig, load_config, parse_config
from agents.notify.errors import NotifyConfigError

REPO = Path(__file__).resolve().parents[3]
CHANNELS_YAML = REPO / "deploy" / "config" / "channels.yaml"
ALL_SECRETS = {
    "MEVRISK_WEBHOOK_SECRET": "hook-secret-1",
    "MEVRISK_SLACK_WEBHOOK_URL": "https://hooks.slack.test/services/T/B/XYZ",
    "MEVRISK_SMTP_PASSWORD": "smtp-secret-2",
    "MEVRISK_SMS_AUTH_TOKEN": "sms-secret-3",
    "MEVRISK_PAGERDUTY_ROUTING_KEY": "pd-secret-4",
}


def test_shipped_config_loads_with_all_secrets() -> None:
    cfg = load_config(CHANNELS_YAML, ALL_SECRETS)
    assert set(cfg.channels) == {"webhook", "slack", "email", "sms", "pagerduty", "alertmanager"}
    enabled = {n for n, c in cfg.channels.items() if c.enabled}
    assert enabled == {"webhook", "slack", "email", "sms", "pagerduty"}, "alertmanager is opt-in"
    hook = cfg.channels["webhook"]
    assert hook.secret is not None and hook.secret.get_secret_value() == "hook-secret-1"
    assert cfg.channels["slack"].url == ALL_SECRETS["MEVRISK_SLACK_WEBHOOK_URL"]
    assert cfg.channels["pagerduty"].url == "https://events.pagerduty.com/v2/enqueue"
    assert cfg.channels["pagerduty"].grouping is False
    assert cfg.channels["alertmanager"].grouping is False
    assert cfg.channels["email"].backoff.max_secs == 60
    assert cfg.grouping.group_by == ("alertname", "portfolio")


def test_shipped_config_without_secrets_disables_auto_channels() -> None:
    cfg = load_config(CHANNELS_YAML, {})
    enabled = {n for n, c in cfg.channels.items() if c.enabled}
    assert enabled == set(), "nothing is sent anywhere until a channel is configured"


def test_secrets_never_appear_in_repr_or_dump() -> None:
    cfg = load_config(CHANNELS_YAML, ALL_SECRETS)
    shown = repr(cfg) + str(cfg)
    dumped = cfg.model_dump_json()
    for name, value in ALL_SECRETS.items():
        assert value not in shown
        if name != "MEVRISK_SLACK_WEBHOOK_URL":  # a plain URL field, kept out of repr only
            assert value not in dumped


def test_config_is_frozen() -> None:
    cfg = load_config(CHANNELS_YAML, ALL_SECRETS)
    with pytest.raises(ValidationError):
        cfg.channels["webhook"].max_attempts = 9  # type: ignore[misc]
    assert isinstance(cfg, NotifyConfig)


def test_missing_required_secret_names_variable_not_value() -> None:
    data = {"channels": {"hook": {"type": "webhook", "url": "http://x",
                                  "secret_env": "MEVRISK_NOPE"}}}
    with pytest.raises(NotifyConfigError, match="MEVRISK_NOPE"):
        parse_config(data, {})


def test_type_specific_fields_are_checked() -> None:
    data = {"channels": {"mail": {"type": "email", "host": "h"}}}
    with pytest.raises(NotifyConfigError, match="from_addr"):
        parse_config(data, {})


def test_route_to_unknown_channel_is_rejected() -> None:
    data = {"channels": {"hook": {"type": "webhook", "url": "http://x"}},
            "routes": [{"severities": ["critical"], "channels": ["pager"]}]}
    with pytest.raises(NotifyConfigError, match="pager"):
        parse_config(data, {})


def test_bad_values_give_clear_errors() -> None:
    data = {"channels": {"hook": {"type": "webhook", "url": "http://x", "max_attempts": 0}}}
    with pytest.raises(NotifyConfigError, match="max_attempts"):
        parse_config(data, {})
    with pytest.raises(NotifyConfigError, match="channel name"):
        parse_config({"channels": {"Bad Name": {"type": "webhook", "url": "u"}}}, {})
