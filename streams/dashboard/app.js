// MEV Risk Stream dashboard: plain JavaScript, no dependencies, no CDN.
// Data: an initial fetch of each /api/v1 endpoint, then the /api/v1/stream event stream
// (read with fetch so the bearer token travels in a header, never in a URL).
"use strict";

const TOKEN_KEY = "mevrisk.token";
const state = { portfolio: null, chosen: false, portfolios: new Set(), history: [], alertsTimer: null,
  streamAbort: null };

// ---- helpers ------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

const usd = (x) => (x == null ? "–" : (Math.abs(x) >= 1e6 ? (x / 1e6).toFixed(2) + "M" :
  Math.abs(x) >= 1e3 ? (x / 1e3).toFixed(1) + "k" : Number(x).toFixed(0)) + " $");
const pct = (x) => (x == null ? "–" : (100 * x).toFixed(1) + "%");
const time = (ms) => new Date(ms).toISOString().slice(11, 19);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function headers(extra) {
  const h = Object.assign({ "Accept": "application/json" }, extra || {});
  if (token()) h["Authorization"] = "Bearer " + token();
  return h;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.body ? { "Content-Type": "application/json" } : {});
  const resp = await fetch(path, opts);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (resp.status === 401) { $("token-form").hidden = false; }
  return { ok: resp.ok, status: resp.status, body };
}

function withPortfolio(path) {
  return state.portfolio ? path + "?portfolio=" + encodeURIComponent(state.portfolio) : path;
}

// ---- renderers -----------------------------------------------------------------------
function renderOverview(o) {
  const r = $("rating-value");
  r.textContent = o.portfolio_risk_rating || "–";
  r.className = "value rating-" + (o.portfolio_risk_rating || "");
  $("rating-sub").textContent = "score " + (o.rating_score ?? 0).toFixed(2) + " · " + time(o.ts_ms);
  $("exposure-value").textContent = usd(o.total_exposure);
  $("exposure-sub").textContent = "net " + usd(o.net_exposure) + " · " + o.active_positions + " positions";
  $("var-value").textContent = usd(o.var_95) + " / " + usd(o.var_99);
  $("var-sub").textContent = "conc. " + pct(o.max_concentration) + " · corr. " + pct(o.correlation_risk);
  $("es-value").textContent = usd(o.expected_shortfall_95) + " / " + usd(o.expected_shortfall_99);
  $("es-sub").textContent = o.worst_stress_scenario ? "worst stress: " + o.worst_stress_scenario : "";
  const select = $("portfolio");
  for (const n of o.portfolios || []) state.portfolios.add(n);
  const names = [...state.portfolios].sort();
  if (select.options.length !== names.length || [...select.options].some((x, i) => x.value !== names[i])) {
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }
  select.value = o.portfolio;
  state.portfolio = o.portfolio;
}

function overviewFromSnapshot(s) {
  return {
    portfolio: s.portfolio, portfolios: [...state.portfolios],
    portfolio_risk_rating: s.rating, rating_score: s.rating_score, ts_ms: s.ts_ms,
    total_exposure: s.total_exposure_usd, net_exposure: s.net_exposure_usd,
    active_positions: s.active_positions, var_95: s.var_95_usd, var_99: s.var_99_usd,
    expected_shortfall_95: s.es_95_usd, expected_shortfall_99: s.es_99_usd,
    max_concentration: s.max_concentration, correlation_risk: s.correlation_risk,
    worst_stress_scenario: s.worst_stress_scenario,
  };
}

function renderPositions(rows) {
  const body = $("positions-table").tBodies[0];
  body.replaceChildren(...rows.slice(0, 15).map((p) => el("tr", {},
    el("td", { title: p.type + " · " + (p.asset || "") }, p.id), el("td", {}, p.strategy || ""),
    el("td", { class: "num" }, usd(p.exposure)), el("td", { class: "num" }, usd(p.risk_amount)),
    el("td", { class: "rating-" + p.risk_level }, p.risk_level || ""))));
}

function positionsFromSnapshot(s) {
  return (s.positions || []).map((p) => Object.assign({}, p, { risk_amount: p.risk_amount_usd, exposure: p.exposure_usd }))
    .sort((a, b) => b.risk_amount - a.risk_amount);
}

function renderStress(tests, worst) {
  $("worst-scenario").textContent = worst ? "most dangerous: " + worst : "";
  const entries = Object.entries(tests || {});
  const maxAbs = Math.max(1, ...entries.map(([, r]) => Math.abs(r.total_impact ?? r.pnl_usd ?? 0)));
  $("stress-bars").replaceChildren(...entries.map(([name, r]) => {
    const v = r.total_impact ?? r.pnl_usd ?? 0;
    const bar = el("div", { class: "bar" + (v > 0 ? " gain" : "") });
    bar.style.width = (100 * Math.abs(v) / maxAbs).toFixed(1) + "%";
    return el("div", { class: "bar-row" + (name === worst ? " worst" : ""), dataset: { scenario: name } },
      el("span", {}, name), el("div", { class: "bar-track" }, bar), el("span", { class: "num" }, usd(v)));
  }));
}

function stressFromSnapshot(s) {
  const out = {};
  for (const [k, r] of Object.entries(s.stress || {})) out[k] = Object.assign({ total_impact: r.pnl_usd }, r);
  return out;
}

function renderChart() {
  const svg = $("var-chart");
  const pts = state.history.slice(-600);
  const W = 900, H = 220, L = 60, B = 20;
  const ns = "http://www.w3.org/2000/svg";
  const mk = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    return n;
  };
  svg.replaceChildren();
  if (pts.length < 2) { svg.append(mk("text", { x: L, y: H / 2 }, "waiting for snapshots…")); return; }
  const t0 = pts[0].ts_ms, t1 = pts[pts.length - 1].ts_ms || t0 + 1;
  const ymax = Math.max(1, ...pts.map((p) => p.var_99_usd || 0)) * 1.1;
  const x = (t) => L + (W - L - 5) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => H - B - (H - B - 5) * v / ymax;
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    svg.append(mk("line", { class: "grid", x1: L, x2: W, y1: y(v), y2: y(v) }));
    svg.append(mk("text", { x: 2, y: y(v) + 4 }, usd(v)));
  }
  svg.append(mk("text", { x: L, y: H - 4 }, time(t0)));
  svg.append(mk("text", { x: W - 60, y: H - 4 }, time(t1)));
  const line = (key) => pts.map((p) => x(p.ts_ms).toFixed(1) + "," + y(p[key] || 0).toFixed(1)).join(" ");
  svg.append(mk("polyline", { class: "l95", points: line("var_95_usd") }));
  svg.append(mk("polyline", { class: "l99", points: line("var_99_usd") }));
  for (let i = 1; i < pts.length; i++) {
    if ((pts[i].backtest_exceptions || 0) > (pts[i - 1].backtest_exceptions || 0)) {
      svg.append(mk("circle", { class: "exc", cx: x(pts[i].ts_ms), cy: y(pts[i].var_99_usd || 0), r: 4 }));
    }
  }
}

function pushHistory(s) {
  const last = state.history[state.history.length - 1];
  if (last && s.ts_ms <= last.ts_ms) return;
  state.history.push({ ts_ms: s.ts_ms, var_95_usd: s.var_95_usd, var_99_usd: s.var_99_usd,
    backtest_exceptions: (s.backtest || {}).exceptions || 0 });
  if (state.history.length > 3600) state.history.shift();
}

function renderAlerts(rows) {
  const open = rows.filter((a) => a.state !== "resolved").length;
  $("alerts-value").textContent = String(open);
  $("alerts-sub").textContent = rows.filter((a) => a.state === "acknowledged").length + " acknowledged";
  const body = $("alerts-table").tBodies[0];
  body.replaceChildren(...rows.map((a) => {
    const actions = el("td", { class: "actions" });
    if (a.state !== "resolved") {
      if (!a.acknowledged) actions.append(el("button", { class: "ack", type: "button", onclick: () => alertAction(a.id, "acknowledge") }, "Ack"));
      actions.append(el("button", { class: "resolve", type: "button", onclick: () => alertAction(a.id, "resolve") }, "Resolve"));
      actions.append(el("button", { class: "silence", type: "button", onclick: () => silence(a) }, "Silence 1h"));
    }
    return el("tr", { class: "state-" + a.state, dataset: { alertId: a.id, state: a.state } },
      el("td", {}, el("span", { class: "sev sev-" + a.severity }, a.severity)),
      el("td", { title: (a.annotations || {}).description || "" }, a.rule_name + " · " + (a.entity_id || "") + ": " + (a.message || "")),
      el("td", { class: "alert-state" }, a.state + (a.acknowledged_by ? " (" + a.acknowledged_by + ")" : "")),
      el("td", {}, (a.startsAt || "").slice(11, 19)), actions);
  }));
}

function renderStrategies(rows) {
  const body = $("strategies-table").tBodies[0];
  body.replaceChildren(...rows.map((s) => {
    const halted = s.trading_state !== "ACTIVE";
    const button = halted
      ? el("button", { type: "button", onclick: () => sendControl("strategy:" + s.strategy, "RESUME") }, "Resume")
      : el("button", { type: "button", class: "danger", onclick: () => sendControl("strategy:" + s.strategy, "HALT") }, "Halt");
    return el("tr", { dataset: { strategy: s.strategy } }, el("td", {}, s.strategy),
      el("td", { class: halted ? "rating-HIGH" : "rating-LOW" }, s.effective_state || s.trading_state),
      el("td", { class: "num" }, pct(s.inclusion_rate)), el("td", { class: "num" }, pct(s.revert_rate)),
      el("td", { class: "num" }, usd(s.net_pnl_usd)), el("td", { class: "num" }, usd(s.drawdown_usd)), el("td", { class: "actions" }, button));
  }));
}

function renderControls(c) {
  const body = $("controls-table").tBodies[0];
  const entries = Object.entries(c.states || {});
  body.replaceChildren(...(entries.length ? entries.map(([scope, st]) => el("tr", {}, el("td", {}, scope), el("td", { class: "rating-HIGH" }, st)))
    : [el("tr", {}, el("td", { colspan: "2", class: "muted" }, "every scope ACTIVE"))]));
}

function renderAnomaly(p) {
  if (!p) {
    $("anomaly-value").textContent = "–";
    $("anomaly-sub").textContent = "no scorer";
    return;
  }
  const d = p.anomaly_detection || {};
  const f = p.alert_forecast || {};
  $("anomaly-value").textContent = Number(d.anomaly_score || 0).toFixed(2) + (d.is_anomaly ? " ⚠" : "");
  const horizon = f.horizon_ms ? " in " + Math.round(f.horizon_ms / 60000) + " min" : "";
  $("anomaly-sub").textContent = (d.is_anomaly ? "ANOMALY" : "normal") +
    (f.probability != null ? " · alert forecast " + pct(f.probability) + horizon : "");
}

function anomalyFromSnapshot(s) {
  const a = s.anomaly;
  if (!a) return null;
  return {
    anomaly_detection: a.anomaly_detection || { anomaly_score: a.portfolio_score, is_anomaly: a.portfolio_is_anomaly },
    alert_forecast: { probability: a.alert_probability, horizon_ms: a.alert_horizon_ms },
  };
}

function renderHealth(h) {
  const lines = [
    "status: " + h.status + " · watermark " + (h.watermark_ms ? new Date(h.watermark_ms).toISOString() : "–"),
    "services: " + Object.entries(h.services || {}).map(([k, v]) => k + "=" + v).join(", "),
    "sources: " + (h.sources || []).map((s) => s.name + " " + s.status + " (" + Math.round(s.age_ms / 1000) + "s)").join(", "),
  ];
  if (Object.keys(h.rule_errors || {}).length) lines.push("rule errors: " + Object.keys(h.rule_errors).join(", "));
  $("health").replaceChildren(...lines.map((l) => el("div", {}, l)));
}

const OUTCOME_CLASS = { delivered: "rating-LOW", failed: "rating-MEDIUM", gave_up: "rating-CRITICAL" };

function renderDeliveries(rows) {
  const body = $("deliveries-table").tBodies[0];
  body.replaceChildren(...(rows.length ? rows.map((d) => el("tr", { dataset: { outcome: d.outcome, channel: d.channel } },
    el("td", { title: d.timestamp }, time(d.ts_ms)), el("td", { title: d.channel_type }, d.channel),
    el("td", { class: OUTCOME_CLASS[d.outcome] || "", title: d.error || "" }, d.outcome),
    el("td", { class: "num" }, d.attempt + "/" + (d.max_attempts ?? "?")),
    el("td", { title: (d.alert_ids || []).join(", ") }, (d.alert_ids || []).length + " · " + (d.severity || "")),
    el("td", { class: "num" }, Math.round(1000 * (d.latency_secs || 0)) + " ms")))
    : [el("tr", {}, el("td", { colspan: "6", class: "muted" }, "no notification sent yet"))]));
}

const dayOf = (ms) => new Date(ms).toISOString().slice(0, 10);
const minutes = (secs) => (secs == null ? "–" : secs < 120 ? secs.toFixed(0) + " s" : (secs / 60).toFixed(1) + " min");

function reportPath(day, portfolio) {
  return "/api/v1/reports/daily?" + new URLSearchParams({ date: day, portfolio, format: "html" }).toString();
}

// A report link carries no bearer header when followed: ask for a signed, short-lived URL of it
// and go there (the plain href still works where reads are open).
async function openReport(ev) {
  ev.preventDefault();
  const a = ev.currentTarget;
  const query = new URLSearchParams({ date: a.dataset.date, portfolio: a.dataset.portfolio, format: "html" });
  const r = await api("/api/v1/reports/daily/link?" + query.toString());
  if (!r.ok) { showError("report link failed: " + ((r.body || {}).error || r.status)); return; }
  window.location.assign(r.body.url);
}

function renderFirm(f) {
  $("firm-exposure").textContent = usd(f.total_exposure) + " (net " + usd(f.net_exposure) + ")";
  $("firm-var").textContent = usd(f.var_95) + " / " + usd(f.var_99);
  $("firm-es").textContent = usd(f.expected_shortfall_95) + " / " + usd(f.expected_shortfall_99);
  $("firm-div").textContent = usd(f.diversification_95) + " / " + usd(f.diversification_99);
  const rating = $("firm-rating");
  rating.textContent = f.portfolio_risk_rating || "–";
  rating.className = "figure rating-" + (f.portfolio_risk_rating || "");
  $("firm-sub").textContent = (f.portfolios || []).length + " portfolios · " + f.active_positions +
    " positions · " + f.alerts + " open alerts · " + time(f.ts_ms) + " (VaR of the joint P&L, not a sum)";
  for (const n of f.portfolios || []) state.portfolios.add(n);
  const day = dayOf(f.ts_ms);  // today in event time: the day of the newest snapshot
  $("firm-table").tBodies[0].replaceChildren(...(f.per_portfolio || []).map((p) => el("tr", { dataset: { portfolio: p.portfolio } },
    el("td", {}, p.portfolio),
    el("td", { class: "rating-" + (p.portfolio_risk_rating || "") }, p.portfolio_risk_rating || ""),
    el("td", { class: "num" }, usd(p.total_exposure)), el("td", { class: "num" }, usd(p.var_95)),
    el("td", { class: "num" }, usd(p.var_99)), el("td", { class: "num" }, String(p.portfolio_alerts ?? 0)),
    el("td", {}, el("a", { class: "report-link", href: reportPath(day, p.portfolio),
      dataset: { portfolio: p.portfolio, date: day }, onclick: openReport }, "report " + day)))));
}

function sparkline(id, series) {
  const svg = $(id);
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const all = series.flatMap((s) => s.values).filter((v) => v != null);
  if (all.length < 2) return;
  const lo = Math.min(...all), hi = Math.max(...all), span = Math.max(hi - lo, 1e-9);
  for (const s of series) {
    const n = s.values.length;
    const pts = s.values.map((v, i) => (200 * i / Math.max(1, n - 1)).toFixed(1) + "," +
      (38 - 36 * ((v ?? lo) - lo) / span).toFixed(1)).join(" ");
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts);
    if (s.cls) line.setAttribute("class", s.cls);
    svg.append(line);
  }
}

function direction(values) {
  const v = values.filter((x) => x != null);
  if (v.length < 2 || v[0] === v[v.length - 1]) return "→";
  return v[v.length - 1] > v[0] ? "↑" : "↓";
}

function renderGlance(ro, vd, pos, al, st) {
  if (ro && ro.risk_trend) {
    const t = ro.risk_trend;
    const last = t[t.length - 1] || {};
    $("glance-risk-trend").textContent = (last.risk_rating || ro.risk_rating || "–") + " · VaR 95 " +
      direction(t.map((p) => p.var_95)) + " over " + t.length + " snapshots";
    sparkline("spark-risk", [{ values: t.map((p) => p.var_95) }]);
    $("glance-sub").textContent = (ro.portfolio || "") + " · " + (ro.last_update || "").slice(11, 19);
  }
  if (vd && vd.var_trend) {
    const t = vd.var_trend;
    $("glance-var-trend").textContent = "VaR 99 " + usd(vd.var_99) + " " + direction(t.map((p) => p.var_99));
    sparkline("spark-var", [{ values: t.map((p) => p.var_95) }, { values: t.map((p) => p.var_99), cls: "alt" }]);
  }
  if (pos && pos.positions) $("glance-high-risk").textContent = pos.high_risk_positions + " of " + pos.total_positions + " (risk above 5% of exposure)";
  if (al && al.alerts) $("glance-unresolved").textContent = al.unresolved_alerts + " of " + al.total_alerts;
  if (st && st.scenarios) {
    const name = st.most_dangerous_scenario;
    const r = (st.scenarios || {})[name];
    $("glance-scenario").textContent = name && r ? name + ": " + usd(r.total_impact) + " (" + pct(r.impact_percentage) + ")" : "–";
  }
}

function renderSummary(s) {
  $("summary-mtta").textContent = minutes(s.mtta_seconds);
  $("summary-mttr").textContent = minutes(s.mttr_seconds);
  $("summary-response").textContent = s.average_response_time == null ? "–" : s.average_response_time.toFixed(1) + " min";
  $("summary-sub").textContent = s.total_alerts + " alerts · " + s.active_alerts + " active · " + s.acknowledged_alerts + " acknowledged";
  const sev = Object.entries(s.by_severity || {}).sort((a, b) => b[1] - a[1]);
  const st = Object.entries(s.by_state || {});
  const rows = [];
  for (let i = 0; i < Math.max(sev.length, st.length); i++) {
    const [sn, sc] = sev[i] || ["", ""];
    const [tn, tc] = st[i] || ["", ""];
    rows.push(el("tr", {}, el("td", { dataset: { severity: sn } }, sn ? el("span", { class: "sev sev-" + sn }, sn) : ""),
      el("td", { class: "num" }, String(sc)), el("td", { dataset: { state: tn } }, tn), el("td", { class: "num" }, String(tc))));
  }
  $("summary-table").tBodies[0].replaceChildren(...rows);
}

// ---- loading ---------------------------------------------------------------------------
async function loadFirm() {
  const f = await api("/api/v1/risk/overview");  // without ?portfolio=: the firm
  if (!f.ok) { $("firm-sub").textContent = (f.body || {}).error || "no data yet"; return; }
  renderFirm(f.body);
  // until someone picks one, this page's portfolio is the first in sorted order (as the API's default)
  if (!state.portfolio && (f.body.portfolios || []).length) state.portfolio = f.body.portfolios[0];
}

async function loadRisk() {
  const o = await api(withPortfolio("/api/v1/risk/overview"));
  if (!o.ok) { if (o.status === 404) $("rating-sub").textContent = (o.body || {}).error || "no data yet"; return; }
  if (o.body.scope === "firm") return;  // no portfolio yet: loadFirm picks the first
  renderOverview(o.body);
  const [p, v, s, pr] = await Promise.all([
    api(withPortfolio("/api/v1/risk/positions")), api(withPortfolio("/api/v1/risk/var")),
    api(withPortfolio("/api/v1/stress-tests")), api(withPortfolio("/api/v1/predictions"))]);
  if (p.ok) renderPositions(p.body.positions);
  if (v.ok) { state.history = v.body.history || []; renderChart(); }
  if (s.ok) renderStress(s.body.stress_tests, s.body.worst_scenario);
  renderAnomaly(pr.ok ? pr.body : null);
  await loadGlance();
}

// the original dashboard's fields, from its unversioned API (the seed's names and units)
async function loadGlance() {
  if (!state.portfolio) return;
  const [ro, vd, pos, al, st] = await Promise.all([
    api(withPortfolio("/api/risk-overview")), api(withPortfolio("/api/var-data")), api(withPortfolio("/api/positions")),
    api(withPortfolio("/api/alerts")), api(withPortfolio("/api/stress-tests"))]);
  renderGlance(ro.ok && ro.body, vd.ok && vd.body, pos.ok && pos.body, al.ok && al.body, st.ok && st.body);
}

async function loadAlerts() {
  const [r, sm] = await Promise.all([api("/api/v1/alerts?limit=100"), api("/api/v1/alerts/summary")]);
  if (r.ok) renderAlerts(r.body.alerts);
  if (sm.ok) renderSummary(sm.body);
}

async function loadOps() {
  const [st, c, h, d] = await Promise.all([api("/api/v1/strategies"), api("/api/v1/controls"), api("/api/v1/health"),
    api("/api/v1/deliveries?limit=12")]);
  if (st.ok) renderStrategies(st.body.strategies);
  if (c.ok) renderControls(c.body);
  if (h.ok) renderHealth(h.body);
  if (d.ok) renderDeliveries(d.body.deliveries);
}

function scheduleAlerts() {
  if (state.alertsTimer) return;
  state.alertsTimer = setTimeout(() => { state.alertsTimer = null; loadAlerts(); }, 200);
}

// ---- actions ---------------------------------------------------------------------------
async function alertAction(id, action) {
  const r = await api("/api/v1/alerts", { method: "POST", body: JSON.stringify({ alert_id: id, action, comment: "from dashboard" }) });
  showError(r.ok ? "" : action + " failed: " + ((r.body || {}).error || r.status));
  await loadAlerts();
}

async function silence(a) {
  const matchers = { alertname: a.rule_name };
  if (a.scope && a.scope !== "global") matchers[a.scope] = a.entity_id;
  const r = await api("/api/v1/silences", { method: "POST", body: JSON.stringify({ matchers, duration_secs: 3600, comment: "silenced from dashboard" }) });
  showError(r.ok ? "" : "silence failed: " + ((r.body || {}).error || r.status));
  await loadAlerts();
}

async function sendControl(scope, command, reason) {
  if (!window.confirm(command + " " + scope + "?")) return;
  const why = reason || "from dashboard";
  const r = await api("/api/v1/controls", { method: "POST", body: JSON.stringify({ scope, command, reason: why }) });
  showError(r.ok ? "" : command + " failed: " + ((r.body || {}).error || r.status));
  await loadOps();
}

// ---- live stream -------------------------------------------------------------------------
function onEvent(kind, data) {
  if (kind === "snapshot") {
    state.portfolios.add(data.portfolio);
    // until someone picks one, show the first portfolio in sorted order (as the API does)
    if (!state.portfolio || (!state.chosen && data.portfolio < state.portfolio)) {
      if (state.portfolio !== data.portfolio) state.history = [];
      state.portfolio = data.portfolio;
    }
    if (data.portfolio !== state.portfolio) return;
    renderOverview(overviewFromSnapshot(data));
    renderPositions(positionsFromSnapshot(data));
    renderStress(stressFromSnapshot(data), data.worst_stress_scenario);
    if (data.anomaly) renderAnomaly(anomalyFromSnapshot(data));
    pushHistory(data);
    renderChart();
  } else if (kind === "alert") {
    scheduleAlerts();
  } else if (kind === "control") {
    loadOps();
  }
}

async function stream() {
  const live = $("live");
  for (;;) {
    const abort = new AbortController();
    state.streamAbort = abort;
    try {
      const resp = await fetch("/api/v1/stream", { headers: headers({ "Accept": "text/event-stream" }), signal: abort.signal });
      if (!resp.ok) throw new Error("stream " + resp.status);
      live.textContent = "live"; live.className = "pill on";
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let kind = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) { try { onEvent(kind, JSON.parse(data)); } catch (e) { console.error(e); } }
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
    }
    live.textContent = "offline"; live.className = "pill off";
    await new Promise((r) => setTimeout(r, 3000));
  }
}

// ---- start -------------------------------------------------------------------------------
async function start() {
  const me = await api("/api/v1/whoami");
  if (!me.ok) { $("who").textContent = "token needed"; return; }
  $("who").textContent = me.body.name + " (" + me.body.role + ")";
  $("token-form").hidden = true;
  await loadFirm();
  await Promise.all([loadRisk(), loadAlerts(), loadOps()]);
  stream();
  setInterval(loadOps, 5000);
  setInterval(() => { loadFirm(); loadGlance(); }, 5000);
  setInterval(loadAlerts, 10000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-button").addEventListener("click", () => { $("token-form").hidden = !$("token-form").hidden; });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    if (state.streamAbort) state.streamAbort.abort();
    location.reload();
  });
  $("portfolio").addEventListener("change", (ev) => {
    state.portfolio = ev.target.value;
    state.chosen = true;
    state.history = [];
    loadRisk();
  });
  $("control-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sendControl($("control-scope").value.trim(), $("control-command").value, $("control-reason").value.trim());
  });
  start();
});
