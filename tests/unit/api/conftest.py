"""API fixtures: the real pure pipeline fed by the simulator (a flash crash), a host stand-in
that records what the API publishes, and an aiohttp test client over the API routes."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cel
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from agents.assembly import DEFAULT_CONFIG_DIR, PipelineOptions, build_pipeline
from agents.pipeline import RiskPipeline
from streams.api import build_aiohttp_app, build_service
from streams.api.config import ApiSettings
from streams.api.hub import EventHub
from streams.host_reads import HostReads
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

START_MS = 1_767_225_600_000
TOKENS = {
    "viewer-token-0001": "viewer",
    "operator-token-01": {"role": "operator", "name": "olga"},
    "admin-token-00001": {"role": "admin", "name": "ada"},
}
BEARER = {role: {"Authorization": f"Bearer {tok}"} for tok, role in
          (("viewer-token-0001", "viewer"), ("operator-token-01", "operator"),
           ("admin-token-00001", "admin"))}
BEARER["none"] = {}
BEARER["bad"] = {"Authorization": "Bearer not-a-known-token"}


def feed(pipeline: RiskPipeline, duration_s: int = 100, crash_at_s: int = 50) -> None:
    """Feed the simulator's events (a flash crash included) and drain the pipeline."""
    sim = Simulator(seed=5, start_ms=START_MS, rate_eps=100, duration_s=duration_s,
                    incidents=[Incident.parse(f"flash-crash@{crash_at_s}s/20s")])
    for event in sim:
        if isinstance(event.value, dict):
            pipeline.offer(event.topic, event.value)
    pipeline.drain()


@dataclass(frozen=True)
class Base:
    """The fed pipeline, built once per session and never handed to a test: :meth:`fresh` copies it."""

    _pipeline: RiskPipeline

    def fresh(self) -> RiskPipeline:
        """A deep copy of the fed pipeline (alerts, kill switch, audit chains, snapshots, models):
        what one test changes, the next does not see. Compiled CEL programs are immutable and
        cannot be copied, so the copies share them."""
        program_type = type(cel.compile("true"))
        dispatch = copy._deepcopy_dispatch  # type: ignore[attr-defined]  # no public hook per type
        saved = dispatch.get(program_type)
        dispatch[program_type] = lambda program, memo: program
        try:
            return copy.deepcopy(self._pipeline)
        finally:
            if saved is None:
                del dispatch[program_type]
            else:
                dispatch[program_type] = saved


@pytest.fixture(scope="session")
def base() -> Base:
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000))
    feed(pipeline)
    assert len(pipeline.alerts.alerts()) >= 2, "the fixture needs two firing alerts"
    return Base(pipeline)


@dataclass
class FakeHost(HostReads):
    """What the API needs of ``streams.host.PipelineHost``: pipeline, lock, publish (the read
    interface comes from ``HostReads``, as the real host's does)."""

    pipeline: RiskPipeline | None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    published: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    last_event_ts_ms: int = 0
    ready: asyncio.Event | None = None

    async def publish(self, outputs: list[tuple[str, str, dict[str, Any]]]) -> None:
        assert self._lock.locked(), "outputs are published under the host lock"
        self.published.extend(outputs)

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [v for t, _, v in self.published if t == topic]


@pytest.fixture
def host(base: Base) -> FakeHost:
    """A host over this test's own copy of the fed pipeline."""
    return FakeHost(base.fresh())


def settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {"tokens": SecretStr(__import__("json").dumps(TOKENS)),
                              "replicate_snapshots": False, "rules_path": DEFAULT_CONFIG_DIR / "rules.yaml"}
    values.update(overrides)
    return ApiSettings(**values)


REPORT_DATE = "2025-12-01"
"""The day ``tests.unit.reports.test_model._day_records`` records (portfolios alpha and beta)."""


async def read_report_day(date: str) -> Any:
    """The report route's reader in unit tests: a recorded day with known incidents; nothing else."""
    from streams.report_reader import DayRecords  # imports the Faust app: only when a report is asked
    from tests.unit.reports.test_model import _day_records

    return DayRecords(records=_day_records() if date == REPORT_DATE else {k: [] for k in _day_records()})


async def make_client(host: FakeHost, **overrides: Any) -> TestClient:
    hub = EventHub()
    service = build_service(host, settings(**overrides), hub)
    service.reports.read_day = read_report_day  # no broker in unit tests
    client = TestClient(TestServer(build_aiohttp_app(service)))
    await client.start_server()
    client.service = service  # type: ignore[attr-defined]
    return client


@pytest.fixture
async def client(host: FakeHost) -> AsyncIterator[TestClient]:
    c = await make_client(host)
    yield c
    await c.close()


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text((DEFAULT_CONFIG_DIR / "rules.yaml").read_text())
    return path
