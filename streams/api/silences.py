"""Silences: list, add and expire (taken and audited by the leader), and following the silences
any worker audited on ``risk.audit`` into this worker's alert engine (``streams.api.follow``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from agents.alerts.errors import AlertsError
from agents.pipeline import GLOBAL_CHAIN
from streams.api import shape
from streams.api.auth import Principal, Role
from streams.api.common import MAX_TS_MS, ApiError, Route, json_body, json_response, str_field
from streams.api.follow import SilenceFollower
from streams.api.peers import Peers
from streams.api.state import ApiState

log = logging.getLogger(__name__)

MAX_SILENCE_SECS = 366 * 86_400

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/silences", "list_silences", Role.VIEWER),
    Route("POST", "/api/v1/silences", "add_silence", Role.OPERATOR),
    Route("DELETE", "/api/v1/silences/{silence_id}", "delete_silence", Role.OPERATOR),
)


def silence_window(body: dict[str, Any], now_ms: int) -> tuple[int, int]:
    """(starts_ms, ends_ms) from ``starts_ms`` (default: the watermark) and ``ends_ms`` or
    ``duration_secs`` (default one hour); at most a year long."""
    def ms(name: str, default: int) -> int:
        value = body.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_TS_MS:
            raise ApiError(400, f"field {name!r} must be an integer time in ms since the epoch")
        return value

    starts = ms("starts_ms", now_ms)
    if "ends_ms" in body:
        ends = ms("ends_ms", 0)
    else:
        secs = body.get("duration_secs", 3_600)
        if not isinstance(secs, int | float) or isinstance(secs, bool) or not 0 < secs <= MAX_SILENCE_SECS:
            raise ApiError(400, f"field 'duration_secs' must be a number in (0, {MAX_SILENCE_SECS}]")
        ends = starts + int(secs * 1000)
    if not starts < ends <= starts + MAX_SILENCE_SECS * 1000:
        raise ApiError(400, "a silence must end after it starts and last at most 366 days")
    return starts, ends


class SilenceViews:
    def __init__(self, state: ApiState, peers: Peers) -> None:
        self.state, self.peers = state, peers
        self.follower = SilenceFollower()
        self._pending_audit: list[dict[str, Any]] = []
        self._pending_task: asyncio.Task[None] | None = None

    async def list_silences(self, request: web.Request, who: Principal) -> web.StreamResponse:
        self.state.require_pipeline()
        wm = self.state.watermark()
        rows = [{**s.to_dict(), "active": s.active_at(wm), "startsAt": shape.rfc3339(s.starts_ms),
                 "endsAt": shape.rfc3339(s.ends_ms)} for s in self.state.host.silences()]
        return json_response({"silences": rows, "total": len(rows), "ts_ms": wm})

    async def add_silence(self, request: web.Request, who: Principal) -> web.StreamResponse:
        body = await json_body(request, self.state.settings.max_body_bytes)
        if not body.get("matchers"):
            raise ApiError(400, "field 'matchers' is required, e.g. {\"alertname\": \"HighVaR95\"}")
        comment = str_field(body, "comment", required=False)
        starts, ends = silence_window(body, self.state.watermark())
        if (answer := await self.peers.at_leader(request, body)) is not None:
            return answer
        result: dict[str, str] = {}

        def change(pipeline: Any) -> list[Any]:
            sid, outputs = pipeline.add_silence(body["matchers"], starts, ends, who.name, comment)
            result["id"] = sid
            return outputs

        try:
            await self.state.apply(change)
        except AlertsError as e:
            raise ApiError(400, str(e)) from None
        log.info("silence %s added by %s", result["id"], who.name)
        return json_response({"message": f"silence {result['id']} created", "id": result["id"],
                              "starts_ms": starts, "ends_ms": ends}, 201)

    async def delete_silence(self, request: web.Request, who: Principal) -> web.StreamResponse:
        silence_id = request.match_info["silence_id"]
        if (answer := await self.peers.at_leader(request, {})) is not None:
            return answer
        found: list[bool] = []

        def change(pipeline: Any) -> list[Any]:
            outputs = pipeline.delete_silence(silence_id, who.name)
            if outputs:
                found.append(True)
            return outputs

        await self.state.apply(change)
        if not found:
            raise ApiError(404, f"no silence {silence_id!r}")
        log.info("silence %s deleted by %s", silence_id, who.name)
        return json_response({"message": f"silence {silence_id} expired", "id": silence_id})

    # ---- silences taken on another worker ------------------------------------------------------
    def follow_audit(self, record: dict[str, Any]) -> None:
        """Apply a silence record of ``risk.audit`` (any worker's) to this worker's alert engine
        once this worker's clock has reached the event time it was taken at, as the crash-recovery
        replay does (``schedule_operator``); held back while recovery replays."""
        if not self.state.host.running() or record.get("kind") != "silence":
            return
        if record.get("stream") != GLOBAL_CHAIN:  # where the leader audits silences
            return
        self._pending_audit.append(record)
        self._drain_audit()
        if self._pending_audit and self._pending_task is None:
            self._pending_task = asyncio.get_running_loop().create_task(self._drain_later())

    def _drain_audit(self) -> None:
        host = self.state.host
        if not host.running() or host.recovering():
            return
        watermark, waiting = host.watermark(), []
        for record in self._pending_audit:
            if int(record.get("ts_ms", 0)) <= watermark:
                host.follow_silence(self.follower, record["payload"])
            else:
                waiting.append(record)
        self._pending_audit = waiting

    async def _drain_later(self) -> None:
        try:
            while self._pending_audit:
                await asyncio.sleep(0.2)
                self._drain_audit()
        finally:
            self._pending_task = None

    def close(self) -> None:
        if self._pending_task is not None:
            self._pending_task.cancel()
