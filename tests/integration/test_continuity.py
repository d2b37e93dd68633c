"""Records the consumer skipped (as Faust can around a rebalance) are delivered again, once, in order
(``streams.continuity``): the run's alert events still equal the offline replay's, none twice, and
the group commits every input record."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import Env
from tests.integration.test_crash_recovery import WORKER_ENV, await_run_alerts, record_flash_crash

pytestmark = pytest.mark.integration


def test_records_skipped_by_the_consumer_come_back(env: Env, start_worker, tmp_path: Path) -> None:
    recording, horizon, expected = record_flash_crash(env, tmp_path)
    worker = start_worker(**WORKER_ENV, MEVRISK_FAULT_INJECT="hole:apply_positions")
    env.mevrisk("replay", str(recording))

    # every alert event of the offline replay, none twice, and every input record committed
    try:
        await_run_alerts(env, worker, horizon, expected, 120, "every alert event of the run")
    except AssertionError as exc:
        late = worker.metric("mevrisk_pipeline_events", kind="late")
        raise AssertionError(f"{exc}\nlate events: {late}\n{worker.log.read_text(errors='replace')[-4000:]}"
                             ) from None
    log = worker.log.read_text(errors="replace")
    assert "fault injection" in log, "the hole was never made: the test proves nothing"
    filled = worker.metric("mevrisk_input_holes_total", topic="mev.positions", how="filled")
    assert filled >= 1, log[-3000:]
    worker.assert_healthy()
