"""Issue 12 item 3: the engine does not trust ``risk.audit`` (or the output topics) blindly.

Anyone who can produce to the cluster can write ``risk.audit``. Recovery re-applies operator actions
read there, every worker follows silences from it, and the newest ``seq`` per chain decides what a
restarted worker does not publish again. So: malformed records are skipped and counted (never a
crash, never a crash loop at start); records are acted on only when their HMAC (keyed by the worker
secret) verifies; a forged ``seq: 1e12`` suppresses nothing; ``mevrisk audit verify`` checks the
tags and detects truncation against a stored head.
"""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import orjson
import pytest

from agents.audit.chain import AuditChain, record_hash
from agents.audit.trust import AuditGate, audit_key, sign
from streams.cli import main
from streams.recovery import OutputHeads
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    TEST_CHECKPOINT_SECRET,
    Env,
    env,
    run,
    start_worker,
    wait_until,
    worker_watch,
)

KEY = audit_key(b"security-test-worker-secret")
START_MS = 1_767_225_600_000


def _forged_head(stream: str, seq: int = 10**12) -> dict:
    """A record anyone can write: well formed, its own hash right, no valid tag."""
    record = {"stream": stream, "seq": seq, "kind": "control", "ts_ms": START_MS,
              "payload": {"scope": "global", "command": "HALT", "actor": "mallory", "reason": "x"},
              "prev_hash": "f" * 64}
    record["hash"] = record_hash(record)
    return record


@pytest.mark.parametrize("key", [KEY, None], ids=["with-secret", "without-secret"])
def test_a_huge_forged_seq_does_not_suppress_later_records(key: bytes | None) -> None:
    chain = AuditChain("risk")
    genuine = [chain.append("alert", {"i": i}, ts_ms=i) for i in range(3)]
    if key is not None:
        genuine = [sign(r, key) for r in genuine]
    heads = OutputHeads(gate=AuditGate(key))
    for record in [*genuine[:2], _forged_head("risk"), {**_forged_head("risk"), "mac": "0" * 64},
                   {"stream": "risk", "seq": 10**12}, genuine[2]]:
        heads.add("risk.audit", record)
    assert heads.audit_seq == {"risk": 2}
    assert not heads.already_published("risk.audit", {"stream": "risk", "seq": 3})
    assert heads.gate.refused["malformed"] == 1
    assert heads.gate.refused["forged" if key else "unlinked"] == 2


def test_operator_actions_need_a_valid_tag() -> None:
    """What recovery acts on: only records whose tag verifies; without a secret, none."""
    chain = AuditChain("risk")
    ack = chain.append("control", {"scope": "global", "command": "HALT", "actor": "ada", "reason": ""}, 5)
    signed, gate = sign(ack, KEY), AuditGate(KEY, link_unsigned=False)
    assert gate.accept(signed)
    assert not gate.accept(ack)  # no tag
    assert not gate.accept(sign(ack, audit_key(b"another-secret-of-16+")))  # another secret
    assert not gate.accept({**signed, "payload": {**signed["payload"], "actor": "mallory"}})
    assert gate.refused == {"forged": 2, "malformed": 1}
    unkeyed = AuditGate(None, link_unsigned=False)
    assert not unkeyed.accept(signed) and unkeyed.refused == {"unsigned": 1}


def test_audit_verify_checks_tags_and_an_expected_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from agents.audit.trust import audit_key as derive
    from streams.settings import get_settings

    secret = "cli-test-worker-secret-0001"
    monkeypatch.setenv("MEVRISK_CHECKPOINT_SECRET", secret)
    get_settings.cache_clear()
    try:
        key = derive(secret.encode())
        chain = AuditChain("risk")
        records = [sign(chain.append("alert", {"n": i}, 1_000 + i), key) for i in range(5)]
        anchor = records[3]["hash"]

        def verify(recs: list[dict], *extra: str) -> int:
            path = tmp_path / "audit.jsonl"
            path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs) + b"{not json\n")
            return main(["audit", "verify", "--file", str(path), *extra])

        assert verify(records, "--expect-head", anchor, "--expect-head", f"risk={anchor}") == 0
        assert "tags checked, ok" in capsys.readouterr().out
        assert verify(records[:3], "--expect-head", anchor) == 1  # truncated after the anchor
        assert "BROKEN" in capsys.readouterr().out
        assert verify(records[:3], "--expect-head", f"risk={anchor}") == 1
        assert "truncated" in capsys.readouterr().out
        unsigned = [{k: v for k, v in r.items() if k != "mac"} for r in records]
        assert verify(unsigned) == 1  # chains, but nobody with the secret wrote it
        assert "mac missing or does not verify" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


# ---- a real worker over a hostile risk.audit ----------------------------------------------------
OPERATOR = "security-operator-token"


def _post(worker, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.web_port}{path}", method="POST", data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)
        return orjson.loads(response.read())


def _get(worker, path: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}",
                                     headers={"Authorization": f"Bearer {OPERATOR}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


async def _read_objects(target: Env, topic: str) -> list[dict]:
    """Every JSON object on ``topic`` up to its current end (the poison this test wrote skipped)."""
    from aiokafka import AIOKafkaConsumer

    from tests.integration.conftest import end_offsets

    ends = await end_offsets(target.bootstrap, [target.topic(topic)])
    consumer = AIOKafkaConsumer(bootstrap_servers=target.bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[dict] = []
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        while pending := [tp for tp in ends if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(*pending, timeout_ms=500)).values():
                for r in records:
                    try:
                        value = orjson.loads(r.value) if r.value is not None else None
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(value, dict):
                        out.append(value)
    finally:
        await consumer.stop()
    return out


async def _poison_audit(target: Env) -> None:
    from aiokafka import AIOKafkaProducer

    forged_action = _forged_head("risk", seq=0)  # a HALT of everything, "by" mallory
    forged_action["prev_hash"] = "0" * 64
    forged_action["hash"] = record_hash(forged_action)
    producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap, acks="all")
    await producer.start()
    try:
        for value in (b"{not json", b"[1, 2]", orjson.dumps(forged_action),
                      orjson.dumps(_forged_head("risk")),
                      orjson.dumps({**_forged_head("risk"), "seq": 10**12 + 1, "mac": "0" * 64})):
            await producer.send(target.topic("risk.audit"), value=value, key=b"risk")
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.integration
@pytest.mark.kills_worker
def test_a_worker_over_a_hostile_audit_topic(env: Env, start_worker, tmp_path: Path) -> None:  # noqa: F811
    """Malformed and forged records on risk.audit before the first start: the worker starts, acts on
    none of them (no HALT from a forged record), counts them, and still publishes and re-applies its
    own, signed, global audit records (a forged seq 1e12 suppresses nothing)."""
    run(_poison_audit(env))
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "5", "--rate", "100", "--duration", "30",
                "--start-ms", str(START_MS), "--record", str(recording))
    worker_env = {"MEVRISK_BAR_MS": "1000",
                  "MEVRISK_API_TOKENS": orjson.dumps({OPERATOR: "operator"}).decode()}
    worker = start_worker(**worker_env)
    env.mevrisk("replay", str(recording), "--pace", "fast")
    try:
        wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= START_MS + 20_000, 120,
                   "the worker to process the input over a hostile audit topic")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.state()}") from None
    # two records not JSON, one whose hash does not match; two well formed but without a valid tag
    assert worker.metric("mevrisk_untrusted_records_total", topic="risk.audit", reason="malformed") >= 3
    assert worker.metric("mevrisk_untrusted_records_total", topic="risk.audit", reason="forged") >= 2
    silence = _post(worker, "/api/v1/silences", {"matchers": {"portfolio": "beta"}, "duration_secs": 86_400,
                                                 "comment": "maintenance"})

    def own_silence_record() -> dict:
        records = run(_read_objects(env, "risk.audit"))
        found = [r for r in records if r.get("kind") == "silence" and r["payload"].get("id") == silence["id"]]
        assert found, "the silence's audit record is on risk.audit"
        return found[0]

    record = wait_until(own_silence_record, 60, "the silence audited")
    assert record["stream"] == "risk" and record["seq"] < 10**12 and len(record["mac"]) == 64
    controls = run(_read_objects(env, "risk.controls"))
    assert not [c for c in controls if c.get("actor") == "mallory"], "a forged audit record was acted on"
    worker.assert_healthy()

    worker.stop(signal.SIGKILL)  # and after a crash the same: the start reads the same hostile records
    restarted = start_worker(**worker_env)
    wait_until(lambda: restarted.health()[1].get("recovering") is False, 120,
               "the restarted worker recovered")
    wait_until(lambda: silence["id"] in {s["id"] for s in _get(restarted, "/api/v1/silences")["silences"]},
               120, "the signed silence re-applied from risk.audit after the restart")
    controls = run(_read_objects(env, "risk.controls"))
    assert not [c for c in controls if c.get("actor") == "mallory"], "a forged audit record was acted on"
    assert restarted.metric("mevrisk_untrusted_records_total", topic="risk.audit", reason="forged") >= 2
    restarted.assert_healthy()
    assert TEST_CHECKPOINT_SECRET  # the workers sign with the fixture's secret
