"""The narrow interface the web views read (and change) the worker's pipeline through.

``streams.host.PipelineHost`` inherits it; so does any stand-in host of the tests (it needs
``pipeline``, ``_lock``, ``ready`` and ``publish``). The views never take the host's lock or
read the alert engine's internals themselves: every read here returns plain values (copies,
where the pipeline keeps mutating the original), and the one way to change the pipeline is
:meth:`HostReads.apply`. No Faust import here, so the API's unit tests stay light.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Outputs = list[tuple[str, str, dict[str, Any]]]


@dataclass(frozen=True)
class RulesView:
    """The alert engine's rule set and its evaluation counters, as of one read."""

    rules: tuple[Any, ...]
    source: str
    inhibit_rules: int
    errors: Mapping[str, int]
    """Rule name -> evaluation errors so far (only rules that failed)."""
    last_error: Mapping[str, str]
    """Rule name -> ``"<Type>: <message>"`` of its latest evaluation error."""
    evaluations: int
    late_dropped: int


class HostReads:
    """Reads of the pipeline for the API; each returns a neutral value when no pipeline runs yet.

    Times are event-time milliseconds (the pipeline's watermark)."""

    pipeline: Any
    _lock: asyncio.Lock
    ready: asyncio.Event

    async def publish(self, outputs: Outputs) -> None:  # implemented by the host
        raise NotImplementedError

    # ---- state of the worker -----------------------------------------------------------
    def running(self) -> bool:
        """Whether a pipeline is installed (False before the first recovery starts)."""
        return self.pipeline is not None

    def recovering(self) -> bool:
        """Whether the host is still replaying its inputs after a (re)start."""
        ready = getattr(self, "ready", None)
        return ready is not None and not ready.is_set()

    def watermark(self) -> int:
        """The pipeline's event-time clock in ms (0 without a pipeline)."""
        return int(self.pipeline.watermark_ms) if self.pipeline is not None else 0

    def is_leader(self) -> bool:
        """Whether this worker owns input partition 0 (takes and audits global changes)."""
        return bool(getattr(self.pipeline, "leader", True))

    # ---- risk ----------------------------------------------------------------------------
    def local_snapshots(self) -> dict[str, dict[str, Any]]:
        """Latest snapshot per portfolio this worker computed (a copy of the mapping)."""
        return dict(self.pipeline.latest_snapshots) if self.pipeline is not None else {}

    def firm_risk(self, snapshots: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """The firm view of these snapshots over this worker's market scenarios
        (``RiskEngine.firm``); None without a pipeline."""
        return self.pipeline.risk.firm(snapshots) if self.pipeline is not None else None

    def strategy_rows(self) -> list[dict[str, Any]]:
        """Health of every strategy with statistics, with its own and its effective trading state."""
        pipeline = self.pipeline
        if pipeline is None:
            return []
        wm, ks = self.watermark(), pipeline.kill_switch
        return [{**pipeline.risk.strategy_health(s, wm), "trading_state": ks.state(f"strategy:{s}").value,
                 "effective_state": ks.effective_state(strategy=s).value}
                for s in pipeline.risk.health.strategies()]

    def scenario_descriptions(self) -> dict[str, str]:
        """Stress scenario name -> its description (``deploy/config/scenarios.yaml``)."""
        risk = getattr(self.pipeline, "risk", None)
        return {sc.name: sc.description for sc in getattr(risk, "scenarios", ())}

    def trading_states(self) -> dict[str, Any]:
        """The kill switch's state per scope (``KillSwitch.to_dict``)."""
        return self.pipeline.kill_switch.to_dict() if self.pipeline is not None else {}

    # ---- alerts ----------------------------------------------------------------------------
    def alert_views(self) -> list[dict[str, Any]]:
        """This worker's alerts as the API lists them, at the watermark."""
        return self.pipeline.alerts.views(self.watermark()) if self.pipeline is not None else []

    def holds_foreign_alert(self, key: str) -> bool:
        """Whether this worker tracks the alert (id or fingerprint) of a portfolio or strategy whose
        input partition it does not own (any more): the owner acts on it, not this copy."""
        pipeline = self.pipeline
        owns = getattr(pipeline, "owns", None)
        if owns is None:
            return False
        state = next((s for s in pipeline.alerts.alerts() if key in (s.id, s.fingerprint)), None)
        return state is not None and state.scope in ("portfolio", "strategy") and not owns(state.scope,
                                                                                          state.entity_id)

    def control_home(self, scope: str) -> tuple[bool, int | None]:
        """(whether this worker takes a control on ``scope``, the input partition whose owner takes it).

        A control is audited on its scope's chain (``risk-p<N>`` of a portfolio or strategy, the
        global ``risk`` else), so it is taken by the owner of input partition N; a global one, or
        one for a portfolio or strategy no input has named yet, by the leader."""
        pipeline = self.pipeline
        kind, _, name = scope.partition(":")
        home = pipeline.home_of(kind, name) if kind in ("portfolio", "strategy") else None
        if home is None:
            return self.is_leader(), 0
        return bool(pipeline.owns(kind, name)), home

    def silences(self) -> list[Any]:
        """The alert engine's silences (``Silence`` values: ``to_dict``, ``active_at``)."""
        return list(self.pipeline.alerts.silences()) if self.pipeline is not None else []

    def rules_view(self) -> RulesView:
        engine = self.pipeline.alerts
        return RulesView(rules=tuple(engine.ruleset.rules), source=engine.ruleset.source,
                         inhibit_rules=len(engine.ruleset.inhibit_rules), errors=dict(engine.errors),
                         last_error=dict(engine.last_error), evaluations=engine.evaluations,
                         late_dropped=engine.late_dropped)

    def follow_silence(self, follower: Any, payload: Mapping[str, Any]) -> None:
        """Apply a silence record another worker audited (``streams.api.follow.SilenceFollower``)."""
        if self.pipeline is not None:
            follower.apply(self.pipeline.alerts, payload)

    # ---- health ------------------------------------------------------------------------------
    def sources(self) -> list[dict[str, Any]]:
        """Input sources with their age, status (ACTIVE, INACTIVE, or ERROR after more than 5
        consecutive rejected messages) and ``error_count`` (``agents.source_errors``)."""
        rows = self.pipeline.sources() if self.pipeline is not None else []
        errors = getattr(self, "source_errors", None)
        return errors.annotate(rows) if errors is not None else rows

    def pipeline_stats(self) -> dict[str, Any]:
        """The pipeline's counters (``PipelineStats`` as a dict)."""
        return dataclasses.asdict(self.pipeline.stats) if self.pipeline is not None else {}

    def model_status(self) -> dict[str, Any] | None:
        """The online models' status; None when no model runs on this worker."""
        models = getattr(self.pipeline, "models", None)
        return models.status() if models is not None else None

    # ---- the one way to change the pipeline ---------------------------------------------------
    async def apply(self, change: Callable[[Any], Outputs]) -> Outputs:
        """Run ``change(pipeline)`` under the host's lock, publish its outputs and wait until they are
        durable (when the host can flush), so the caller answers only after that."""
        async with self._lock:
            outputs = change(self.pipeline)
            publishing = getattr(self, "_publishing", None)
            if publishing is not None:  # after what earlier steps are still sending (PipelineHost)
                async with publishing:
                    await self.publish(outputs)
            else:
                await self.publish(outputs)
            flush = getattr(self, "flush", None)
            if flush is not None and outputs:
                await flush()
        return outputs
