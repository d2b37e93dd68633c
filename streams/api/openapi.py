"""The OpenAPI 3.1 document of ``/api/v1`` (hand-written; a unit test checks it covers ROUTES).

Schemas list the fields clients rely on and allow extra ones, so adding a field is not
a breaking change.
"""

from __future__ import annotations

from typing import Any

NUM = {"type": "number"}
INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
OBJ = {"type": "object"}
NULLABLE_NUM = {"type": ["number", "null"]}
NULLABLE_STR = {"type": ["string", "null"]}
TS_MS = {"type": "integer", "minimum": 0, "maximum": 2**53}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": sorted(required),
            "properties": {**required, **(optional or {})}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


PORTFOLIO_Q = {"name": "portfolio", "in": "query", "required": False, "schema": STR,
               "description": "Portfolio id (default: the first portfolio in sorted order)"}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STR}),
    "Overview": _obj({
        "timestamp": STR, "portfolio_risk_rating": STR, "total_exposure": NUM, "var_95": NUM,
        "var_99": NUM, "max_concentration": NUM, "correlation_risk": NUM, "active_positions": INT,
        "alerts": INT, "portfolio": NULLABLE_STR, "portfolios": {"type": "array", "items": STR}},
        {"ts_ms": INT, "expected_shortfall_95": NUM, "expected_shortfall_99": NUM,
         "rating_score": NUM, "portfolio_alerts": INT, "worst_stress_scenario": NULLABLE_STR,
         "scope": STR, "sum_of_var_95": NUM, "sum_of_var_99": NUM, "diversification_95": NUM,
         "diversification_99": NUM, "per_portfolio": {"type": "array", "items": OBJ}}),
    "Position": _obj({"id": STR, "type": STR, "risk_amount": NUM, "risk_percentage": NUM,
                      "exposure": NUM, "confidence": NUM},
                     {"strategy": STR, "asset": STR, "risk_level": STR, "component_var_99": NUM}),
    "Positions": _obj({"positions": {"type": "array", "items": _ref("Position")},
                       "total_positions": INT, "total_exposure": NUM, "timestamp": STR}),
    "Var": _obj({"var_95": NUM, "var_99": NUM, "expected_shortfall_95": NUM,
                 "expected_shortfall_99": NUM, "confidence_level": STR, "timestamp": STR},
                {"history": {"type": "array", "items": _obj(
                    {"ts_ms": INT, "var_95_usd": NUM, "var_99_usd": NUM},
                    {"es_99_usd": NUM, "backtest_exceptions": INT})}}),
    "StressTests": _obj({"stress_tests": {"type": "object", "additionalProperties": _obj(
        {"total_impact": NUM, "impact_percentage": NUM},
        {"position_impacts": OBJ, "worst_position": {}})}, "timestamp": STR},
        {"worst_scenario": NULLABLE_STR}),
    "Predictions": _obj({
        "anomaly_detection": _obj({"is_anomaly": BOOL, "anomaly_score": NUM},
                                  {"confidence": NULLABLE_NUM, "risk_level": NULLABLE_STR}),
        "risk_classification": _obj({"predicted_risk_level": NULLABLE_STR},
                                    {"probability": NULLABLE_NUM, "confidence": NULLABLE_NUM,
                                     "all_probabilities": OBJ}),
        "alert_forecast": OBJ, "var_forecast": {"type": ["object", "null"]}}, {"timestamp": STR}),
    "Health": _obj({
        "timestamp": STR, "status": STR,
        "services": _obj({"risk_engine": STR, "alert_manager": STR, "ml_predictor": STR,
                          "data_pipeline": STR}),
        "metrics": _obj({"total_predictions": INT, "active_alerts": INT, "models_loaded": INT,
                         "alert_rules": INT}),
        "watermark_ms": INT, "pipeline": OBJ, "sources": {"type": "array", "items": OBJ},
        "stale_sources": {"type": "array", "items": STR}, "rule_errors": OBJ}),
    "Models": _obj({"state_version": INT, "models_loaded": INT, "total_predictions": INT, "ticks": OBJ,
                    "portfolios": OBJ}, {"ts_ms": {"type": ["integer", "null"]}}),
    "Alert": _obj({"id": STR, "fingerprint": STR, "rule_name": STR, "severity": STR, "timestamp": STR,
                   "message": STR, "status": STR, "state": STR, "acknowledged": BOOL, "resolved": BOOL},
                  {"data": OBJ, "labels": OBJ, "annotations": OBJ, "startsAt": STR, "endsAt": STR,
                   "acknowledged_at": NULLABLE_STR, "resolved_at": NULLABLE_STR,
                   "escalated_from": NULLABLE_STR, "escalated_at": NULLABLE_STR, "portfolio": NULLABLE_STR,
                   "notifications_sent": {"type": "array", "items": STR}}),
    "Alerts": _obj({"alerts": {"type": "array", "items": _ref("Alert")}, "total_alerts": INT,
                    "filters": _obj({"severity": NULLABLE_STR, "unresolved_only": BOOL, "limit": INT},
                                    {"state": NULLABLE_STR, "portfolio": NULLABLE_STR})}),
    "AlertSummary": _obj({"total_alerts": INT, "by_severity": OBJ, "by_type": OBJ, "active_alerts": INT,
                          "acknowledged_alerts": INT, "average_response_time": NULLABLE_NUM,
                          "by_state": OBJ, "mtta_seconds": NULLABLE_NUM, "mttr_seconds": NULLABLE_NUM},
                         {"resolved_alerts": INT, "mtta_seconds_by_severity": OBJ,
                          "mttr_seconds_by_severity": OBJ, "filters": OBJ}),
    "AlertAction": {**_obj({"alert_id": STR, "action": {"type": "string",
                                                        "enum": ["acknowledge", "resolve"]}},
                           {"comment": STR})},
    "Message": _obj({"message": STR}),
    "Silence": _obj({"id": STR, "matchers": {"type": "array", "items": OBJ}, "starts_ms": INT,
                     "ends_ms": INT, "author": STR, "comment": STR, "active": BOOL}),
    "Silences": _obj({"silences": {"type": "array", "items": _ref("Silence")}, "total": INT}),
    "NewSilence": _obj({"matchers": {
        "description": "Alertmanager matchers: a {label: value} mapping, a list of strings such "
                       "as 'severity=\"critical\"', or {name, value, isRegex, isEqual} objects"}},
        {"comment": STR, "starts_ms": INT, "ends_ms": INT, "duration_secs": NUM}),
    "SilenceCreated": _obj({"message": STR, "id": STR, "starts_ms": INT, "ends_ms": INT}),
    "Controls": _obj({"states": {"type": "object", "additionalProperties": STR},
                      "recent": {"type": "array", "items": OBJ},
                      "commands": {"type": "array", "items": STR}}),
    "Command": _obj({"scope": {"type": "string", "description": "strategy:<id>, portfolio:<id> or global"},
                     "command": {"type": "string", "enum": ["HALT", "REDUCE", "RESUME"]},
                     "reason": STR}),
    "CommandSent": _obj({"message": STR, "control": _obj(
        {"control_id": STR, "scope": STR, "command": STR, "state": STR, "reason": STR, "actor": STR,
         "ts_ms": INT})}),
    "Rules": _obj({"rules": {"type": "array", "items": _obj(
        {"name": STR, "scope": STR, "expr": STR, "severity": STR, "channels": {"type": "array"}},
        {"condition": STR, "cooldown_minutes": NUM, "message": STR, "eval_errors": INT})},
        "total": INT}),
    "RulesReloaded": _obj({"message": STR, "rules": INT, "alerts_resolved": INT},
                          {"added": {"type": "array"}, "removed": {"type": "array"},
                           "changed": {"type": "array"}, "workers": INT}),
    "RulesInvalid": _obj({"error": STR, "problems": {"type": "array", "items": STR}}),
    "Backtest": _obj({"portfolios": {"type": "object", "additionalProperties": _obj(
        {"observations": INT, "exceptions": INT, "zone": STR},
        {"kupiec_pvalue": NUM, "christoffersen_pvalue": NUM, "confidence": NUM})}}),
    "Strategies": _obj({"strategies": {"type": "array", "items": _obj(
        {"strategy": STR, "trading_state": STR},
        {"inclusion_rate": NULLABLE_NUM, "revert_rate": NULLABLE_NUM, "net_pnl_usd": NUM,
         "drawdown_usd": NUM, "win_rate": NULLABLE_NUM})}}),
    "Delivery": _obj({"channel": STR, "channel_type": STR,
                      "outcome": {"type": "string", "enum": ["delivered", "failed", "gave_up"]},
                      "attempt": INT, "alert_ids": {"type": "array", "items": STR},
                      "fingerprints": {"type": "array", "items": STR}, "latency_secs": NUM,
                      "ts_ms": INT, "event_ts_ms": INT, "timestamp": STR, "event_timestamp": STR},
                     {"max_attempts": INT, "batch_id": STR, "kind": STR,
                      "event_ids": {"type": "array", "items": STR}, "severity": STR, "status": STR,
                      "error": NULLABLE_STR, "status_code": {"type": ["integer", "null"]},
                      "retry_in_secs": NULLABLE_NUM, "audit_seq": {"type": ["integer", "null"]}}),
    "Deliveries": _obj({"deliveries": {"type": "array", "items": _ref("Delivery")}, "total": INT,
                        "filters": OBJ}, {"ts_ms": INT}),
    "WhoAmI": _obj({"name": STR, "role": STR, "anonymous": BOOL, "tokens_configured": BOOL}),
    # ---- the seed dashboard's unversioned API (streams/api/seed.py) ----
    "NoData": _obj({"status": {"type": "string", "enum": ["no_data"]}}),
    "SeedRiskOverview": {"anyOf": [_ref("NoData"), _obj({
        "risk_rating": STR, "total_exposure": NUM, "var_95": NUM, "var_99": NUM,
        "max_concentration": NUM, "correlation_risk": NUM, "last_update": STR, "active_alerts": INT,
        "risk_trend": {"type": "array", "items": OBJ}})]},
    "SeedPositions": {"anyOf": [_ref("NoData"), _obj({
        "positions": {"type": "array", "items": _obj(
            {"id": STR, "type": STR, "risk_amount": NUM, "risk_percentage": NUM, "exposure": NUM,
             "risk_level": {"type": "string", "enum": ["HIGH", "MEDIUM", "LOW"]}})},
        "total_positions": INT, "high_risk_positions": INT, "last_update": STR})]},
    "SeedAlerts": _obj({"alerts": {"type": "array", "items": _ref("Alert")}, "total_alerts": INT,
                        "unresolved_alerts": INT}),
    "SeedVarData": {"anyOf": [_ref("NoData"), _obj({
        "var_95": NUM, "var_99": NUM, "expected_shortfall_95": NUM, "expected_shortfall_99": NUM,
        "confidence_level": STR, "var_trend": {"type": "array", "items": OBJ}, "last_update": STR})]},
    "DailyReport": _obj({"schema": STR, "date": STR, "start_ms": INT, "end_ms": INT, "source": STR,
                         "portfolios": {"type": "array", "items": _obj({"portfolio": STR}, {
                             "figures": OBJ, "limits": OBJ, "alerts": {"type": "array", "items": OBJ},
                             "mttx": OBJ, "controls": {"type": "array", "items": OBJ}, "backtest": OBJ,
                             "stress": OBJ, "strategies": {"type": "array", "items": OBJ}})},
                         "audit": OBJ},
                        {"portfolio_filter": NULLABLE_STR, "firm": OBJ, "data_quality": OBJ}),
    "ReportLink": _obj({"url": STR, "expires_in_secs": NUM, "date": STR, "portfolio": NULLABLE_STR,
                        "format": STR}),
    "SeedStressTests": {"anyOf": [_ref("NoData"), _obj({
        "scenarios": {"type": "object", "additionalProperties": _obj(
            {"total_impact": NUM, "impact_percentage": NUM, "worst_position": NULLABLE_STR,
             "scenario_description": STR})},
        "most_dangerous_scenario": NULLABLE_STR, "last_update": STR})]},
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "invalid request", 401: "missing or unknown token",
            403: "role too low or mutations disabled",
            404: "no data yet / not found", 413: "request body too large", 429: "rate limited",
            503: "pipeline not running yet (reports: another report is being built, or the topics "
                 "cannot be read)"}
    return {str(c): _json("Error", text[c]) for c in codes}


READ_ERRORS = (401, 403, 429, 503)
WRITE_ERRORS = (400, 401, 403, 413, 429, 503)


def _get(summary: str, schema: str, params: list[Any] | None = None, *, not_found: bool = True,
         role: str = "viewer") -> dict[str, Any]:
    codes = (*READ_ERRORS, 404) if not_found else READ_ERRORS
    return {"summary": summary, "x-role": role, "parameters": params or [],
            "responses": {"200": _json(schema, "OK"), **_errors(*codes)}}


def _write(summary: str, body: str, ok: str, role: str, *, status: str = "200",
           not_found: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    codes = (*WRITE_ERRORS, 404) if not_found else WRITE_ERRORS
    return {"summary": summary, "x-role": role,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(body)}}},
            "responses": {status: _json(ok, "OK"), **_errors(*codes), **(extra or {})}}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


ALERT_PARAMS = [
    _q("severity", STR, "info, warning, high, critical (seed LOW/MEDIUM/HIGH/CRITICAL accepted)"),
    _q("state", {"type": "string", "enum": ["firing", "acknowledged", "silenced", "resolved"]}, "state"),
    _q("portfolio", STR, "portfolio label"),
    _q("unresolved_only", BOOL, "hide resolved alerts"),
    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "max rows"),
]


DELIVERY_PARAMS = [
    _q("channel", STR, "channel name (from the channels file)"),
    _q("outcome", {"type": "string", "enum": ["delivered", "failed", "gave_up"]}, "outcome"),
    _q("alert_id", STR, "an alert id or fingerprint the delivery covered"),
    _q("fingerprint", STR, "an alert fingerprint the delivery covered"),
    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "max rows"),
]


REPORT_PARAMS = [
    {"name": "date", "in": "query", "required": True, "schema": {"type": "string", "format": "date"},
     "description": "UTC day YYYY-MM-DD (event time)"},
    _q("portfolio", STR, "one portfolio (default: every portfolio of the day)"),
    _q("format", {"type": "string", "enum": ["html", "pdf", "json"], "default": "html"}, "output format"),
    _q("actor", STR, "signed link: the actor it was signed for"),
    _q("expires", INT, "signed link: Unix seconds it expires at"),
    _q("sig", STR, "signed link: HMAC-SHA256 of the path and query"),
]


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/v1/openapi.json": {"get": {"summary": "This document", "x-role": "open",
                                         "responses": {"200": {"description": "OpenAPI document",
                                                               "content": {"application/json": {
                                                                   "schema": OBJ}}}}}},
        "/api/v1/whoami": {"get": _get("The caller's actor name and role", "WhoAmI", not_found=False)},
        "/api/v1/risk/overview": {"get": _get(
            "Headline risk of one portfolio, or without ?portfolio= of the firm (VaR/ES of the joint "
            "P&L vector, per_portfolio beside it)", "Overview",
            [{**PORTFOLIO_Q, "description": "Portfolio id (default: the firm, every portfolio)"}])},
        "/api/v1/risk/positions": {"get": _get("Positions sorted by component VaR 99", "Positions",
                                               [PORTFOLIO_Q])},
        "/api/v1/risk/var": {"get": _get("VaR / ES and recent VaR history", "Var", [PORTFOLIO_Q])},
        "/api/v1/stress-tests": {"get": _get("Stress scenario results", "StressTests", [PORTFOLIO_Q])},
        "/api/risk-overview": {"get": _get("Seed dashboard: headline risk", "SeedRiskOverview",
                                           [PORTFOLIO_Q])},
        "/api/positions": {"get": _get("Seed dashboard: positions (risk_percentage a fraction)",
                                       "SeedPositions", [PORTFOLIO_Q])},
        "/api/alerts": {"get": _get("Seed dashboard: newest alerts", "SeedAlerts", [
            ALERT_PARAMS[0], ALERT_PARAMS[2], ALERT_PARAMS[3],
            _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}, "max rows")],
            not_found=False)},
        "/api/var-data": {"get": _get("Seed dashboard: VaR / ES and VaR trend", "SeedVarData",
                                      [PORTFOLIO_Q])},
        "/api/stress-tests": {"get": _get("Seed dashboard: stress scenarios (seed names)", "SeedStressTests",
                                          [PORTFOLIO_Q, _q("scenario", STR, "one scenario, ours or the "
                                                           "seed's name (gas_price_spike)")])},
        "/api/v1/predictions": {"get": _get("Anomaly scores (404 while no scorer runs)", "Predictions",
                                            [PORTFOLIO_Q])},
        "/api/v1/health": {"get": _get("Monitors of the monitors", "Health", not_found=False)},
        "/api/v1/models": {"get": _get("Online models of this worker, with the risk-level classifier's "
                                       "feature importance (404 while none run)", "Models")},
        "/api/v1/alerts": {
            "get": _get("Alerts, newest first", "Alerts", ALERT_PARAMS, not_found=False),
            "post": _write("Acknowledge or resolve an alert", "AlertAction", "Message", "operator",
                           not_found=True)},
        "/api/v1/alerts/summary": {"get": _get(
            "Alert counts by severity, rule and state, MTTA and MTTR (seed: average_response_time)",
            "AlertSummary", [
                _q("start_ms", TS_MS, "alerts that fired at or after (ms)"),
                _q("end_ms", TS_MS, "alerts that fired before (ms)"),
                _q("portfolio", STR, "portfolio label")], not_found=False)},
        "/api/v1/reports/daily": {"get": {
            "summary": "The daily risk and compliance report of a UTC day (event time), as `mevrisk report "
                       "daily` builds it from the topics; one report at a time per worker (503 when busy). "
                       "A signed link from /api/v1/reports/daily/link (actor, expires, sig) stands in for "
                       "the bearer token",
            "x-role": "viewer", "parameters": REPORT_PARAMS,
            "responses": {"200": {"description": "the report", "content": {
                "text/html": {"schema": STR},
                "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}},
                "application/json": {"schema": _ref("DailyReport")}}},
                **_errors(400, 401, 403, 404, 429, 503)}}},
        "/api/v1/reports/daily/link": {"get": {
            **_get("A signed URL of the daily report a browser can follow without a bearer header "
                   "(valid for expires_in_secs, for this report only)", "ReportLink", REPORT_PARAMS[:3],
                   not_found=False),
            "responses": {"200": _json("ReportLink", "OK"), **_errors(400, *READ_ERRORS)}}},
        "/api/v1/silences": {
            "get": _get("Silences", "Silences", not_found=False),
            "post": _write("Create a silence", "NewSilence", "SilenceCreated", "operator", status="201")},
        "/api/v1/silences/{silence_id}": {"delete": {
            "summary": "Expire a silence", "x-role": "operator",
            "parameters": [{"name": "silence_id", "in": "path", "required": True, "schema": STR}],
            "responses": {"200": _json("Message", "OK"), **_errors(401, 403, 404, 429, 503)}}},
        "/api/v1/deliveries": {"get": _get(
            "Notification delivery outcomes of every worker (from risk.audit), newest first",
            "Deliveries", DELIVERY_PARAMS, not_found=False)},
        "/api/v1/controls": {
            "get": _get("Kill-switch state per scope and recent controls", "Controls", not_found=False),
            "post": _write("HALT, REDUCE or RESUME a scope", "Command", "CommandSent", "admin")},
        "/api/v1/rules": {"get": _get("Alert rules in force", "Rules", not_found=False)},
        "/api/v1/rules/reload": {"post": {
            "summary": "Reload the rules file (invalid file: 400 with the problems, old rules stay)",
            "x-role": "admin",
            "responses": {"200": _json("RulesReloaded", "OK"), "400": _json("RulesInvalid", "invalid file"),
                          **_errors(401, 403, 429, 503)}}},
        "/api/v1/backtest": {"get": _get("VaR backtest per portfolio", "Backtest", [PORTFOLIO_Q])},
        "/api/v1/strategies": {"get": _get("Strategy health and trading state", "Strategies")},
        "/api/v1/stream": {"get": {
            "summary": "Server-sent events: hello, snapshot, alert, control (keepalive comments)",
            "x-role": "viewer",
            "parameters": [PORTFOLIO_Q, _q("types", STR, "comma list of snapshot, alert, control")],
            "responses": {"200": {"description": "event stream",
                                  "content": {"text/event-stream": {"schema": STR}}},
                          **_errors(401, 403, 429, 503)}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "MEV Risk Stream API", "version": "1",
                 "description": "Risk snapshots, alerts, silences, kill-switch controls and rules of "
                                "one MEV Risk Stream worker. Bearer tokens with roles viewer < operator "
                                "< admin (x-role on each operation). With no token configured on the "
                                "worker, reads are open and changes are refused."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": SCHEMAS},
        "paths": paths,
    }
