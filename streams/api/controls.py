"""Kill-switch controls: the trading state per scope and the recent controls; HALT, REDUCE and
RESUME commands (admin), published on ``risk.controls`` and audited with the actor on the scope's
chain, by the worker that writes it (the owner of the scope's input partition, the leader for
``global``): another worker forwards the command there, signed (``streams.api.peers``)."""

from __future__ import annotations

import logging

from aiohttp import web

from agents.alerts.controls import COMMANDS
from agents.alerts.errors import AlertsError
from streams.api.auth import Principal, Role
from streams.api.common import ApiError, Route, json_body, json_response, str_field
from streams.api.peers import Peers
from streams.api.state import ApiState

log = logging.getLogger(__name__)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/controls", "list_controls", Role.VIEWER),
    Route("POST", "/api/v1/controls", "command", Role.ADMIN),
)


class ControlViews:
    def __init__(self, state: ApiState, peers: Peers) -> None:
        self.state, self.peers = state, peers

    async def list_controls(self, request: web.Request, who: Principal) -> web.StreamResponse:
        self.state.require_pipeline()
        recent = list(self.state.hub.controls)[::-1][:50]
        return json_response({"states": self.state.host.trading_states(), "recent": recent,
                              "commands": list(COMMANDS), "ts_ms": self.state.watermark()})

    async def command(self, request: web.Request, who: Principal) -> web.StreamResponse:
        body = await json_body(request, self.state.settings.max_body_bytes)
        scope = str_field(body, "scope", max_len=200)
        command = str_field(body, "command", max_len=16).upper()
        reason = str_field(body, "reason")
        if command not in COMMANDS:
            raise ApiError(400, f"field 'command' must be one of {', '.join(COMMANDS)}")
        self.state.require_pipeline()
        here, partition = self.state.host.control_home(scope)
        answer = await self.peers.at_auditor(request, body, here, f"controls on {scope} (the owner of input "
                                             f"partition {partition})", partition)
        if answer is not None:
            return answer
        try:
            outputs = await self.state.apply(lambda p: p.command(scope, command, who.name, reason))
        except AlertsError as e:
            raise ApiError(400, str(e)) from None
        control = next(v for t, _, v in outputs if t == "risk.controls")
        log.info("control %s %s by %s", command, scope, who.name)
        return json_response({"message": f"{command} sent to {scope}", "control": control})
