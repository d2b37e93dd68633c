"""Issue 12 item 2: a silence cannot stall alert evaluation (regex DoS), and silences are bounded.

Silence matchers are evaluated on every alert evaluation, under the pipeline lock, on every worker,
and replayed from ``risk.audit`` after each restart. With a backtracking engine the matcher
``(\\w|\\w|\\w)*!`` takes 3**n steps on a label of n word characters: one silence stops the engine.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from agents.alerts.engine import MAX_SILENCES, AlertEngine
from agents.alerts.errors import AlertsError
from agents.alerts.matchers import MAX_MATCHER_CHARS, MAX_MATCHERS, Matcher, parse_matchers
from agents.alerts.rules import RuleSet
from agents.assembly import PipelineOptions, build_pipeline
from streams.settings import REPO_ROOT
from tests.unit.api.conftest import base, client, host  # noqa: F401  (fixtures of the API tests)

EVIL = r"(\w|\w|\w)*!"
DEADLINE_S = 60.0
"""Generous: the evaluation below takes milliseconds with a linear-time engine, and centuries with a
backtracking one (3**40 steps)."""

_EVALUATE = textwrap.dedent(f"""
    from agents.alerts.matchers import parse_matchers, Silence
    silence = Silence("s", parse_matchers({{"name": "portfolio", "value": {EVIL!r}, "isRegex": True}}),
                      0, 10, "attacker", "")
    labels = {{"portfolio": "a" * 40, "alertname": "HighVaR95"}}
    print(sum(silence.matches(labels, 5) for _ in range(1000)))
""")


def test_evil_silence_regex_is_evaluated_in_linear_time() -> None:
    """The ReDoS pattern of the issue, matched 1,000 times against a 40-character label, in a child
    process (a backtracking engine would never return, and cannot be interrupted in-process)."""
    try:
        done = subprocess.run([sys.executable, "-c", _EVALUATE], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"matching {EVIL!r} against 40 word characters did not finish in {DEADLINE_S} s "
                    "(backtracking regex engine)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"  # no '!': never matches


def test_regex_semantics_kept_and_unsupported_patterns_refused() -> None:
    """Fully anchored, like Alertmanager; RE2 refuses backreferences and lookaround with a clear error."""
    m = Matcher("severity", "warning|high", "=~")
    assert m.matches({"severity": "high"}) and not m.matches({"severity": "highest"})
    assert Matcher("alertname", "Stale.*", "!~").matches({"alertname": "HighVaR95"})
    for bad in (r"(a)\1", r"(?=a)a", "("):
        with pytest.raises(ValueError, match="bad matcher regex"):
            Matcher("a", bad, "=~")


def test_matcher_length_and_count_are_capped() -> None:
    with pytest.raises(ValueError, match="at most"):
        parse_matchers({"alertname": "x" * (MAX_MATCHER_CHARS + 1)})
    with pytest.raises(ValueError, match="at most"):
        parse_matchers([f'l{i}="v"' for i in range(MAX_MATCHERS + 1)])
    assert len(parse_matchers({"alertname": "x" * MAX_MATCHER_CHARS})) == 1


def test_number_of_silences_is_capped() -> None:
    engine = AlertEngine(RuleSet(()))
    for i in range(MAX_SILENCES):
        engine.add_silence({"portfolio": f"p{i}"}, 0, 10_000, "olga", "")
    with pytest.raises(AlertsError, match="too many silences"):
        engine.add_silence({"portfolio": "one-more"}, 0, 10_000, "olga", "")
    assert len(engine.silences()) == MAX_SILENCES
    engine.tick(10_000)  # expired silences are dropped: room again
    engine.add_silence({"portfolio": "one-more"}, 10_000, 20_000, "olga", "")


def test_refused_silence_replayed_from_audit_is_skipped_not_raised() -> None:
    """A refused silence on risk.audit (written by anyone) is skipped at recovery, never a crash."""
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000))
    pipeline.schedule_operator({"kind": "silence_add", "matchers": [{"name": "a", "value": r"(a)\1",
                                "isRegex": True}], "starts_ms": 0, "ends_ms": 10, "actor": "x",
                                "ts_ms": 1_767_225_600_000, "audit_order": 0})
    pipeline.heartbeat(1_767_225_700_000)
    assert pipeline.stats.operator_skipped == 1
    assert pipeline.alerts.silences() == []


async def test_api_refuses_bad_silences_with_a_clear_400(client) -> None:  # noqa: F811
    oper = {"Authorization": "Bearer operator-token-01"}
    for body, reason in (
        ({"matchers": [{"name": "portfolio", "value": r"(a)\1", "isRegex": True}]}, "bad matcher regex"),
        ({"matchers": {"alertname": "x" * (MAX_MATCHER_CHARS + 1)}}, "at most"),
    ):
        resp = await client.post("/api/v1/silences", headers=oper, json={**body, "duration_secs": 60})
        assert resp.status == 400, await resp.text()
        assert reason in (await resp.json())["error"]
    evil = {"matchers": [{"name": "portfolio", "value": EVIL, "isRegex": True}], "duration_secs": 60}
    assert (await client.post("/api/v1/silences", headers=oper, json=evil)).status == 201
