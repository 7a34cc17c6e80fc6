// tether's dashboard: one page, no dependencies, every figure from the server's
// /v1/dashboard API with the viewer's own token (kept in this tab's sessionStorage).
// DOM is built with createElement/textContent only: no server text becomes markup.

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const TOKEN_KEY = "tether-token";
let session = null;

class ApiError extends Error {
  // param: the query parameter the server refused, where it names one.
  constructor(status, message, param = null) { super(message); this.status = status; this.param = param; }
}

// ---- small helpers -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Characters that draw nothing or reorder what follows them (bidirectional controls,
// zero-width characters): in code under review each is shown as its code point, so that
// what a reviewer reads is what runs ("Trojan Source").
const HIDDEN = /[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u{13430}-\u{1343f}\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/gu;
// The same goes for labels a client sent (a language, a principal): a table cell or a
// heading that drew them reordered would misstate what was sent.
const codePoint = (char) => `U+${char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
function revealed(text) {
  const source = String(text ?? ""), parts = [];
  let at = 0;
  for (const match of source.matchAll(HIDDEN)) {
    parts.push(source.slice(at, match.index));
    const point = codePoint(match[0]);
    parts.push(el("span", { class: "hidden-char", title: `invisible character ${point}` }, `⟨${point}⟩`));
    at = match.index + match[0].length;
  }
  parts.push(source.slice(at));
  return parts;
}

// For text that can hold no markup (a select's option): the code point, in brackets.
const revealedText = (text) => String(text ?? "").replace(HIDDEN, (char) => `⟨${codePoint(char)}⟩`);

const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(svgNS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

const fmt = new Intl.NumberFormat("en");
const num = (v) => (v === null || v === undefined ? "–" : fmt.format(Math.round(v)));
const ms = (v) => (v === null || v === undefined ? "–" : `${fmt.format(Math.round(v))} ms`);
const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
const signedPct = (v) => `${v >= 0 ? "+" : ""}${pct(v)}`;
const usd = (v) => `$${(v ?? 0).toFixed(4)}`;
const when = (ts) => new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
const bytes = (n) => (n > 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n > 1024 ? `${(n / 1024).toFixed(1)} KB` : `${n} B`);

function showBanner(message) {
  banner.textContent = message;
  banner.hidden = !message;
}

// ---- the API -------------------------------------------------------------------------

// The server's root, from this script's own address (<root>/ui/static/app.js): behind a
// proxy that serves tether under a path (/tether/), the API is there too, not at "/".
const ROOT = new URL("../../", import.meta.url);

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  let response;
  try {
    response = await fetch(new URL(path.replace(/^\//, ""), ROOT), {
      ...options,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(options.headers || {}) },
    });
  } catch {
    showBanner("The server did not answer: it may have stopped or the network is down. What is shown may be stale; try again when it is back.");
    throw new ApiError(0, "the server did not answer");
  }
  showBanner("");
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    logout(`Your token was refused: ${body.error?.message ?? "wrong or expired"}. Log in with a valid token.`);
    throw new ApiError(401, "token refused");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body.error?.message ?? `the server answered ${response.status}`, body.error?.param);
  }
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// With usage.enabled off the ledger gets no rows: say so rather than show zeros as facts.
function usageOff() {
  return session.usage_recorded === false
    ? el("p", { class: "error", role: "note" }, "The usage ledger is off on this server (usage.enabled = false): these figures count only what was recorded before.")
    : null;
}

// Likewise with traces.enabled off: no request leaves a trace, so an empty list is no news.
function tracesOff() {
  return session.traces_recorded === false
    ? el("p", { class: "error", role: "note" }, "Traces are off on this server (traces.enabled = false): requests leave none, and only traces kept from before are listed.")
    : null;
}

// A query the server refused as mistyped (400) is kept to show beside its form.
function mistyped(error) {
  if (error.status !== 400) throw error;
  return error;
}

// A value the server refused is marked on its field, which the message describes: a
// screen reader back on the field says what is wrong with it.
function refusedValue(error, fields) {
  const said = problem(error);
  const field = error.param && Object.hasOwn(fields, error.param) ? fields[error.param] : null;
  if (field) {
    said.id = `${field.id}-refused`;
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-describedby", said.id);
  }
  return said;
}

function problem(error) {
  const text = error.status === 403 ? `Not allowed with this token: ${error.message}`
    : error.status === 404 ? `Not found: ${error.message}` : `Could not load this page: ${error.message}`;
  return el("p", { class: "error", role: "alert" }, text);
}

// ---- charts --------------------------------------------------------------------------

function lineChart(title, points, series, unit) {
  // points: [{x (seconds), ...}], series: [{key, label, color}]
  const width = 540, height = 180, pad = 36;
  const xs = points.map((p) => p.x);
  const values = points.flatMap((p) => series.map((s) => p[s.key] ?? 0));
  const peak = Math.max(0, ...values);
  const maxY = peak || 1;  // all zero: drawn along the axis, and labelled 0, not 1
  const minX = Math.min(...xs), maxX = Math.max(minX + 1, ...xs);
  const px = (x) => pad + ((x - minX) / (maxX - minX)) * (width - pad - 8);
  const py = (y) => height - 22 - (y / maxY) * (height - 36);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `${title}: ${series.map((s) => s.label).join(", ")} over time, peak ${fmt.format(Math.round(peak))}${unit}` });
  // Colours, the axis's and its label's as the lines', come from the stylesheet: they follow
  // the page's light or dark scheme, and forced colours.
  chart.append(svg("line", { x1: pad, y1: height - 22, x2: width - 8, y2: height - 22 }));
  const top = svg("text", { x: 2, y: 14, "font-size": 11 });
  top.textContent = `${fmt.format(Math.round(peak))}${unit}`;
  chart.append(top);
  series.forEach((s, i) => {
    const d = points.map((p, j) => `${j ? "L" : "M"}${px(p.x).toFixed(1)},${py(p[s.key] ?? 0).toFixed(1)}`).join("");
    if (points.length) chart.append(svg("path", { d, ...lineStyle(s, i) }));
  });
  // Each line's key drawn as the line is: the second is dashed, so that the lines are told
  // apart by more than their colour (by a reader who sees no red from green, in forced colours).
  const legend = el("figcaption", {}, title, ": ",
    ...series.map((s, i) => el("span", { style: `color:${s.color}` }, i ? ", " : "",
      svg("svg", { class: "key", viewBox: "0 0 18 8", width: 18, height: 8, "aria-hidden": "true" },
        svg("line", { x1: 0, y1: 4, x2: 18, y2: 4, ...lineStyle(s, i) })), ` ${s.label}`)));
  return el("figure", {}, chart, legend);
}

// s.color names one of the stylesheet's colours (var(--accent)), light or dark as the page is. It
// is given as the line's color, not its stroke: a rule for forced colours still sets the stroke.
function lineStyle(s, i) {
  return { fill: "none", stroke: "currentColor", style: `color:${s.color}`, "stroke-width": 2, class: `series-${i}`, "stroke-dasharray": i ? "6 3" : "none" };
}

// In a box of its own that scrolls sideways: a wide table on a phone moves, the page does not.
function dataTable(caption, columns, rows) {
  return el("div", { class: "table-scroll" }, el("table", {},
    el("caption", { class: "muted", style: "text-align:left" }, caption),
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, columns.map((c) => tableCell(c, c.show(r))))))));
}

// A box that scrolls (a table wider than the window, a long prompt) is a stop on the
// keyboard's way, named as its table or section is: else what it hides past its edge is
// read with a mouse only. One that fits is no stop; a window resized or zoomed is rechecked.
const scrollers = new ResizeObserver((seen) => { for (const { target } of seen) markScroller(target); });
function markScroller(box) {
  const scrolls = box.scrollWidth > box.clientWidth || box.scrollHeight > box.clientHeight;
  if (scrolls === (box.getAttribute("tabindex") === "0")) return;
  if (!scrolls) {
    for (const name of ["tabindex", "role", "aria-label"]) box.removeAttribute(name);
    return;
  }
  box.setAttribute("tabindex", "0");
  box.setAttribute("role", "region");
  box.setAttribute("aria-label", scrollerName(box));
}
function scrollerName(box) {
  const caption = box.querySelector("caption");
  if (caption) return caption.textContent;
  if (box.dataset.name) return box.dataset.name;
  for (let at = box.previousElementSibling; at; at = at.previousElementSibling) {
    if (/^H[1-6]$/.test(at.tagName)) return at.textContent;
  }
  return "Scrolling text";
}
function watchScrolling(root) {
  for (const box of root.querySelectorAll(".table-scroll, pre")) {
    markScroller(box);  // now, not at the next frame: the page is read as soon as it is drawn
    scrollers.observe(box);
  }
}

// A cell whose text runs unbroken (a 200-character principal or function name) may break
// anywhere: else it alone sets its column's width, and the table's.
const UNBROKEN = /\S{40}/;
function tableCell(column, value) {
  const text = value instanceof Node ? value.textContent : String(value ?? "");
  const kind = column.num ? "num" : UNBROKEN.test(text) ? "unbroken" : null;
  return el("td", { class: kind }, shownCell(value));
}

// A cell's text may be a label a client sent: its hidden characters are shown.
const shownCell = (value) => (typeof value === "string" ? revealed(value) : value);

function card(label, value) {
  return el("div", { class: "card" }, el("div", { class: "muted" }, label), el("div", { class: "value" }, value));
}

function periodPicker(current, onChange, label = "Period") {
  const select = el("select", { id: "period", onchange: (e) => { keepFocusOn = "period"; onChange(e.target.value); } },
    [["24h", "last 24 hours"], ["7d", "last 7 days"], ["30d", "last 30 days"], ["365d", "last year"]]
      .map(([v, t]) => el("option", { value: v, selected: v === current }, t)));
  return el("label", { for: "period" }, label, select);
}

// ---- pages ---------------------------------------------------------------------------

const pages = {
  async overview(params) {
    const period = params.get("period") || "24h";
    const data = await api(`/v1/dashboard/overview?period=${encodeURIComponent(period)}`);
    const t = data.totals, live = data.live;
    const points = data.buckets.map((b) => ({ x: b.start, ...b }));
    return [
      el("h1", { tabindex: -1 }, "Overview"),
      usageOff(),
      el("div", { class: "controls" }, periodPicker(period, (v) => go(`#/overview?period=${encodeURIComponent(v)}`))),
      el("div", { class: "cards" },
        card("Requests", num(t.requests)), card("Errors", `${num(t.errors)} (${pct(t.requests ? t.errors / t.requests : 0)})`),
        card("Prompt tokens", num(t.prompt_tokens)), card("Completion tokens", num(t.completion_tokens)),
        card("Time to first token p50 / p95", `${ms(t.ttft_p50_ms)} / ${ms(t.ttft_p95_ms)}`),
        card("Latency p50 / p95, every API request", `${ms(t.latency_p50_ms)} / ${ms(t.latency_p95_ms)}`),
        card("Queue depth now", num(live.queue_depth)), card("Generating now", num(live.in_flight)),
        card("Engine", live.engine.ready ? `ready (${live.engine.engine})` : "NOT READY")),
      live.upstreams.length ? dataTable("Upstreams", [
        { label: "URL", show: (u) => u.url }, { label: "health", show: (u) => (u.healthy ? "healthy" : "down") },
        { label: "in flight", num: true, show: (u) => num(u.in_flight) }], live.upstreams) : null,
      el("h2", {}, "Over time"),
      el("div", { class: "charts" },
        lineChart("Requests and errors", points, [{ key: "requests", label: "requests", color: "var(--accent)" }, { key: "errors", label: "errors", color: "var(--bad)" }], ""),
        lineChart("Tokens", points, [{ key: "prompt_tokens", label: "prompt", color: "var(--accent)" }, { key: "completion_tokens", label: "completion", color: "var(--good)" }], ""),
        lineChart("Time to first token", points, [{ key: "ttft_p50_ms", label: "p50", color: "var(--accent)" }, { key: "ttft_p95_ms", label: "p95", color: "var(--warn)" }], " ms"),
        lineChart("Latency, every API request (this page's too)", points, [{ key: "latency_p50_ms", label: "p50", color: "var(--accent)" }, { key: "latency_p95_ms", label: "p95", color: "var(--warn)" }], " ms")),
      el("details", {}, el("summary", {}, "The same as a table"),
        dataTable(`Per ${data.bucket_seconds === 3600 ? "hour" : "day"}`, [
          { label: "start", show: (b) => when(b.start) }, { label: "requests", num: true, show: (b) => num(b.requests) },
          { label: "errors", num: true, show: (b) => num(b.errors) },
          { label: "prompt tokens", num: true, show: (b) => num(b.prompt_tokens) },
          { label: "completion tokens", num: true, show: (b) => num(b.completion_tokens) },
          { label: "TTFT p50", num: true, show: (b) => ms(b.ttft_p50_ms) }, { label: "TTFT p95", num: true, show: (b) => ms(b.ttft_p95_ms) },
          { label: "latency p50", num: true, show: (b) => ms(b.latency_p50_ms) },
          { label: "latency p95", num: true, show: (b) => ms(b.latency_p95_ms) }], data.buckets)),
    ];
  },

  async usage(params) {
    const since = params.get("since") || "30d", until = params.get("until") || "", by = params.get("by") || "principal";
    const sinceInput = el("input", { id: "since", value: since, size: 12 });
    // Empty is now; a date ends the period at its midnight: 2026-11-01 to 2026-12-01 is November.
    const untilInput = el("input", { id: "until", value: until, size: 12 });
    const bySelect = el("select", { id: "by" }, ["principal", "model", "day", "endpoint"].map((v) => el("option", { value: v, selected: v === by }, v)));
    const query = () => usageQuery(sinceInput.value, untilInput.value, bySelect.value);
    const apply = () => go(`#/usage?${query()}`);
    const exported = el("p", { role: "status", "aria-live": "polite" });
    const head = [
      el("h1", { tabindex: -1 }, "Usage and cost"),
      usageOff(),
      el("form", { class: "controls", onsubmit: (e) => { e.preventDefault(); apply(); } },
        el("label", { for: "since" }, "Since (30d, 12h, 2026-11-01)", sinceInput),
        el("label", { for: "until" }, "Until (empty: now; 2026-12-01)", untilInput),
        el("label", { for: "by" }, "Group by", bySelect),
        el("button", { type: "submit" }, "Show"),
        // What the form says, Show pressed or not: the file is named for its grouping.
        el("button", { type: "button", onclick: () => exportCsv(query(), bySelect.value, exported) }, "Export CSV")),
      exported,
    ];
    let report;
    try {
      report = await api(`/v1/dashboard/usage?${usageQuery(since, until, by)}`);
    } catch (error) {
      if (error.status !== 400) throw error;
      // A period mistyped: the form stays, to mend it.
      return [...head, refusedValue(error, { since: sinceInput, until: untilInput, by: bySelect })];
    }
    const models = Object.keys(report.total.cloud_usd);
    const rows = [...report.rows, { ...report.total, key: "total" }];
    return [
      ...head,
      el("p", { class: "muted" }, `${report.since} to ${report.until}; prices from table ${report.price_table}, embeddings at ${report.embeddings_priced_as}'s; local cost: hardware $${report.local_cost.hardware_usd} + ${report.local_cost.energy_kwh} kWh (${report.local_cost.energy}).`),
      dataTable(`Usage by ${by}`, [
        { label: by, show: (r) => r.key }, { label: "requests", num: true, show: (r) => num(r.requests) },
        { label: "errors", num: true, show: (r) => num(r.errors) },
        { label: "prompt tokens", num: true, show: (r) => num(r.prompt_tokens) },
        { label: "cached tokens", num: true, show: (r) => num(r.cached_tokens) },
        { label: "completion tokens", num: true, show: (r) => num(r.completion_tokens) },
        { label: "egress avoided", num: true, show: (r) => bytes(r.egress_avoided_bytes) },
        ...models.map((m) => ({ label: `${m} (cloud)`, num: true, show: (r) => usd(r.cloud_usd[m]) })),
        { label: "local", num: true, show: (r) => usd(r.local_usd) }], rows),
    ];
  },

  async funnel(params) {
    const period = params.get("period") || "30d", by = params.get("by") || "language";
    const data = await api(`/v1/dashboard/funnel?period=${encodeURIComponent(period)}&by=${encodeURIComponent(by)}`);
    const bySelect = el("select", { id: "funnel-by", onchange: (e) => (keepFocusOn = "funnel-by") && go(`#/funnel?period=${encodeURIComponent(period)}&by=${encodeURIComponent(e.target.value)}`) },
      ["language", "principal", "model"].map((v) => el("option", { value: v, selected: v === by }, v)));
    return [
      el("h1", { tabindex: -1 }, "Completion funnel"),
      usageOff(),
      el("div", { class: "controls" }, periodPicker(period, (v) => go(`#/funnel?period=${encodeURIComponent(v)}&by=${encodeURIComponent(by)}`)),
        el("label", { for: "funnel-by" }, "Group by", bySelect)),
      el("p", { class: "muted" }, "Served: completions answered on any path. Viewed, selected and dismissed come from editors' Tabby events; acceptance is selected / viewed."),
      dataTable(`Acceptance by ${by}`, [
        { label: by, show: (r) => r.key }, { label: "served", num: true, show: (r) => num(r.served) },
        { label: "viewed", num: true, show: (r) => num(r.viewed) }, { label: "selected", num: true, show: (r) => num(r.selected) },
        { label: "dismissed", num: true, show: (r) => num(r.dismissed) }, { label: "acceptance", num: true, show: (r) => pct(r.acceptance) }],
      [...data.rows, { ...data.total, key: "total" }]),
    ];
  },

  async traces(params, id) {
    if (id) return traceDetail(id);
    const query = new URLSearchParams();
    for (const key of ["principal", "endpoint", "finding", "since", "before"]) if (params.get(key)) query.set(key, params.get(key));
    const [list, facets] = await Promise.all([api(`/v1/dashboard/traces?${query}`).catch(mistyped), api("/v1/dashboard/traces/facets")]);
    // A value from the address that no trace holds yet (a link, an old bookmark) stays
    // chosen: shown as "any", the page would claim to show every trace.
    const filter = (name, label, options) => {
      const chosen = params.get(name) || "";
      const values = chosen && !options.includes(chosen) ? [...options, chosen] : options;
      return el("label", { for: `f-${name}` }, label,
        el("select", { id: `f-${name}`, name }, el("option", { value: "" }, "any"),
          values.map((o) => el("option", { value: o, selected: chosen === o }, revealedText(o)))));
    };
    const sinceInput = el("input", { id: "f-since", name: "since", value: params.get("since") || "", size: 12, placeholder: "7d" });
    const form = el("form", { class: "controls", onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
      go(`#/traces?${q}`);
    } }, filter("principal", "Principal", facets.principals), filter("endpoint", "Endpoint", facets.endpoints),
      filter("finding", "Finding", facets.findings), el("label", { for: "f-since" }, "Since", sinceInput),
      el("button", { type: "submit" }, "Filter"));
    const head = [el("h1", { tabindex: -1 }, "Traces"), tracesOff(), form];
    if (list instanceof ApiError) return [...head, refusedValue(list, Object.fromEntries([...form.elements].filter((e) => e.name).map((e) => [e.name, e])))];  // the form stays, to mend it
    const next = list.next ? (() => { const q = new URLSearchParams(query); q.set("before", list.next); return `#/traces?${q}`; })() : null;
    return [
      ...head,
      dataTable(`${list.data.length} traces, newest first`, [
        { label: "id", show: (t) => el("a", { href: `#/traces/${encodeURIComponent(t.id)}` }, revealed(t.id)) },
        { label: "time", show: (t) => when(t.created) }, { label: "endpoint", show: (t) => t.endpoint },
        { label: "principal", show: (t) => t.principal ?? "–" }, { label: "model", show: (t) => t.model },
        { label: "findings", num: true, show: (t) => num(t.findings) },
        { label: "total", num: true, show: (t) => ms(t.total_ms) }], list.data),
      next ? el("p", {}, el("a", { href: next }, "Older traces")) : el("p", { class: "muted" }, "No older traces."),
    ];
  },

  async audit() {
    const data = await api("/v1/dashboard/audit");
    const keyInput = el("textarea", { id: "verifier-key", rows: 2, cols: 70 }, data.verifier_key);
    const seqInput = el("input", { id: "record-seq", type: "number", min: 0, step: 1, required: true, value: Math.max(0, (data.latest?.size ?? 1) - 1) });
    const result = el("div", { id: "verify-result", role: "status", "aria-live": "polite" });
    const points = data.checkpoints.map((c) => ({ x: c.time, size: c.size }));
    return [
      el("h1", { tabindex: -1 }, "Audit"),
      el("div", { class: "cards" }, card("Records", num(data.latest?.size ?? 0)), card("Checkpoints shown", num(data.checkpoints.length)),
        card("Latest checkpoint", data.latest ? when(data.latest.time) : "none yet")),
      lineChart("Records covered by checkpoints", points, [{ key: "size", label: "tree size", color: "var(--accent)" }], ""),
      el("h2", {}, "Verify in this browser"),
      el("p", { class: "muted" }, "The signature and the proof are checked here with WebCrypto (Ed25519, SHA-256), not by the server. For independence, paste the verifier key you keep (tether audit key), not the one the server offers."),
      el("form", { class: "controls", onsubmit: async (e) => { e.preventDefault(); await verifyRecord(keyInput.value.trim(), Number(seqInput.value), result); } },
        el("label", { for: "verifier-key" }, "Verifier key", keyInput),
        el("label", { for: "record-seq" }, "Record number", seqInput),
        el("button", { type: "submit", class: "primary" }, "Verify checkpoint and record")),
      result,
      el("h2", {}, "Recent checkpoints"),
      dataTable("Newest first", [{ label: "time", show: (c) => when(c.time) }, { label: "records", num: true, show: (c) => num(c.size) },
        { label: "root hash", show: (c) => c.root }], [...data.checkpoints].reverse().slice(0, 20)),
    ];
  },

  async store(params, id) {
    if (id) return snippetDetail(id);
    const status = params.get("status") || "candidate", q = params.get("q") || "";
    const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
    const listed = `status=${encodeURIComponent(status)}${q ? `&q=${encodeURIComponent(q)}` : ""}`;
    const data = await api(`/v1/dashboard/store?${listed}&offset=${offset}`);
    const shown = data.data.length ? `${num(offset + 1)}–${num(offset + data.data.length)} of ${num(data.total)}` : `none of ${num(data.total)}`;
    const previous = offset > 0 ? el("a", { href: `#/store?${listed}&offset=${Math.max(0, offset - 50)}` }, "Previous page") : null;
    const next = data.next_offset !== null ? el("a", { href: `#/store?${listed}&offset=${data.next_offset}` }, "Next page") : null;
    const qInput = el("input", { id: "store-q", type: "search", value: q });
    const statusSelect = el("select", { id: "store-status" }, ["candidate", "vetted", "rejected", "retired", "all"].map((v) => el("option", { value: v, selected: v === status }, v)));
    return [
      el("h1", { tabindex: -1 }, "Function store"),
      el("form", { class: "controls", onsubmit: (e) => { e.preventDefault(); go(`#/store?status=${encodeURIComponent(statusSelect.value)}&q=${encodeURIComponent(qInput.value)}`); } },
        el("label", { for: "store-status" }, "Status", statusSelect), el("label", { for: "store-q" }, "Search", qInput),
        el("button", { type: "submit" }, "Show")),
      dataTable(status === "candidate" ? "The vetting queue" : `Snippets: ${status}`, [
        { label: "snippet", show: (s) => el("a", { href: `#/store/${encodeURIComponent(s.id)}` }, revealed(`${s.name} v${s.version}`)) },
        { label: "status", show: (s) => s.status }, { label: "language", show: (s) => s.language },
        { label: "licence", show: (s) => s.licence ?? "–" },
        { label: "gates", show: (s) => gateSummary(s.gates) }], data.data),
      el("p", { class: "pager" }, `Showing ${shown}. `, previous, previous && next ? " · " : null, next),
    ];
  },

  async evals(params, id) {
    if (id === "compare") return compareRuns(params.get("a"), params.get("b"));
    if (id) return runDetail(id);
    const data = await api("/v1/dashboard/evals");
    const bySuite = {};
    // A run with no task scored has no pass@1: it is left out of the chart, not drawn at 0.
    for (const r of data.runs.filter((r) => r.pass_at_1 !== null)) (bySuite[r.suite] ??= []).push({ x: r.created, pass1: r.pass_at_1 * 100 });
    // B against A, as `tether eval compare A B`: by default the newest against the one before.
    const a = el("select", { id: "cmp-a" }, data.runs.map((r, i) => el("option", { value: r.id, selected: i === 1 }, `${r.id} (${r.suite})`)));
    const b = el("select", { id: "cmp-b" }, data.runs.map((r) => el("option", { value: r.id }, `${r.id} (${r.suite})`)));
    return [
      el("h1", { tabindex: -1 }, "Evaluations"),
      el("div", { class: "charts" }, Object.entries(bySuite).map(([suite, points]) =>
        lineChart(`pass@1 on ${suite}`, points.sort((p, q) => p.x - q.x), [{ key: "pass1", label: "pass@1", color: "var(--accent)" }], "%"))),
      data.runs.length > 1 ? el("form", { class: "controls", onsubmit: (e) => { e.preventDefault(); go(`#/evals/compare?a=${encodeURIComponent(a.value)}&b=${encodeURIComponent(b.value)}`); } },
        el("label", { for: "cmp-a" }, "Run A", a), el("label", { for: "cmp-b" }, "Run B", b), el("button", { type: "submit" }, "Compare")) : null,
      dataTable("Runs, newest first", [
        { label: "run", show: (r) => el("a", { href: `#/evals/${encodeURIComponent(r.id)}` }, r.id) },
        { label: "suite", show: (r) => r.suite }, { label: "time", show: (r) => when(r.created) }, { label: "status", show: (r) => r.status },
        { label: "tasks", num: true, show: (r) => num(r.tasks) }, { label: "pass@1", num: true, show: (r) => pct(r.pass_at_1) }], data.runs),
    ];
  },
};

function gateSummary(gates) {
  const entries = Object.entries(gates || {});
  if (!entries.length) return "–";
  return entries.map(([name, g]) => `${name}: ${g.passed === null ? "pending" : g.passed ? "pass" : "FAIL"}`).join(", ");
}

async function traceDetail(id) {
  const t = await api(`/v1/dashboard/traces/${encodeURIComponent(id)}`);
  const stages = Object.entries(t.timings || {}).filter(([k]) => !["total", "ttft"].includes(k));
  const total = t.timings?.total || stages.reduce((s, [, v]) => s + v, 0) || 1;
  const colors = ["accent", "good", "warn", "violet", "bad", "muted"].map((name) => `var(--${name})`);
  const hidden = t.content_hidden;
  return [
    el("h1", { tabindex: -1 }, `Trace ${t.id}`),
    el("p", { class: "muted" }, revealed(`${when(t.created)} · ${t.endpoint} · ${t.principal ?? "–"} · ${t.model} · ${t.prompt_tokens} + ${t.completion_tokens} tokens · ${t.finish_reason}`)),
    el("h2", {}, "Sampling"),
    dataTable("As the request asked (stop strings as JSON)", [{ label: "setting", show: ([k]) => k },
      { label: "value", show: ([, v]) => (v === null ? "–" : typeof v === "number" ? String(v) : JSON.stringify(v)) }],
    Object.entries(t.sampling || {})),
    el("h2", {}, "Timeline"),
    el("div", { class: "timeline", role: "img", "aria-label": stages.map(([k, v]) => `${k} ${(v * 1000).toFixed(1)} ms`).join(", ") },
      stages.map(([k, v], i) => el("span", { title: `${k}: ${(v * 1000).toFixed(1)} ms`, style: `width:${(v / total) * 100}%;background:${colors[i % colors.length]}` }))),
    dataTable("Stages", [{ label: "stage", show: ([k]) => k }, { label: "time", num: true, show: ([, v]) => `${(v * 1000).toFixed(1)} ms` }], Object.entries(t.timings || {})),
    el("h2", {}, "Policy decisions"),
    t.policy.length ? dataTable("Policy", [{ label: "rule", show: (p) => p.rule_id }, { label: "action", show: (p) => p.action },
      { label: "message", show: (p) => p.message ?? "" }], t.policy) : el("p", { class: "muted" }, "No policy rule matched the prompt."),
    el("h2", {}, "Findings in the answer"),
    t.findings.length ? dataTable("Findings", [{ label: "rule", show: (f) => f.rule_id }, { label: "severity", show: (f) => f.severity ?? "" },
      { label: "message", show: (f) => f.message ?? "" }], t.findings) : el("p", { class: "muted" }, "No findings."),
    el("h2", {}, "Snippets retrieved"),
    t.snippets.length ? dataTable("Snippets", [{ label: "name", show: (s) => s.name ?? s.id }, { label: "version", show: (s) => s.version ?? "" },
      { label: "fitted", show: (s) => (s.fitted ? "yes" : "no") }], t.snippets) : el("p", { class: "muted" }, "None."),
    el("h2", {}, "Audit record"),
    el("p", {}, auditVerdict(t.audit)),
    el("h2", {}, "The prompt as the engine saw it"),
    hidden ? el("p", { class: "muted" }, "Hidden: reading prompts and answers needs the audit:read scope.") : el("pre", {}, revealed(t.prompt)),
    el("h2", {}, "What the engine wrote"),
    hidden ? el("p", { class: "muted" }, "Hidden (audit:read).") : el("pre", {}, revealed(t.output)),
    ...(t.delivered == null ? [] : [el("h2", {}, "What the client got"), el("pre", {}, revealed(t.delivered))]),
    el("p", {}, el("a", { href: "#/traces" }, "All traces")),
  ];
}

function auditVerdict(a) {
  if (!a) return "No audit record has this id (audit.enabled was off, or it is not in this server's log).";
  const parts = [["prompt", a.prompt], ["answer", a.answer], ["sampling", a.sampling], ["model", a.model], ["principal, token, endpoint or how it ended", a.request],
    ["policy decisions or findings", a.findings], ["time", a.time], ["snippets from the store", a.snippets], ["what the client got", a.delivered]];
  const changed = parts.filter(([, ok]) => ok === false).map(([name]) => name);
  if (changed.length) return `Record ${a.seq}: this trace's ${changed.join(" and ")} ${changed.length > 1 ? "are" : "is"} NOT what the record committed to: the trace was changed after it was written.`;
  return `Record ${a.seq}: this trace's prompt and answer are what the record committed to. Its inclusion proof is on the Audit page.`;
}

async function snippetDetail(id) {
  const s = await api(`/v1/dashboard/store/${encodeURIComponent(id)}`);
  // A decision refused is said beside the buttons, and the field it needs is marked with it.
  const reason = el("input", { id: "vet-reason", size: 50, required: true, "aria-describedby": "vet-result",
    oninput: () => reason.removeAttribute("aria-invalid") });
  const callable = el("input", { id: "vet-callable", type: "checkbox", checked: s.callable });
  const result = el("p", { id: "vet-result", role: "status", "aria-live": "polite" });
  // The button pressed is disabled while the server decides, which takes the focus from it:
  // it is given back to that button on a refusal, and to the outcome once the form is gone.
  const decide = async (approve, pressed) => {
    if (!reason.value.trim()) {
      result.textContent = "Give a reason for the decision.";
      reason.setAttribute("aria-invalid", "true");
      reason.focus();
      return;
    }
    // The version and state shown are the ones decided: a version posted or a decision
    // made since is refused, not overridden unseen; a second click waits for the first.
    const decision = { approve, reason: reason.value.trim(), version: s.version, state: s.status };
    if (approve) decision.callable = callable.checked;
    const buttons = [...form.querySelectorAll("button")];
    buttons.forEach((button) => { button.disabled = true; });
    result.textContent = approve ? "Running the gates…" : "Recording…";
    result.className = "";
    try {
      const done = await api(`/v1/snippets/${encodeURIComponent(s.id)}/vet`, { method: "POST", body: JSON.stringify(decision) });
      result.textContent = `Recorded: ${done.state}.`;
      result.className = "ok";
      form.remove();  // decided: the snippet is no longer a candidate
      result.tabIndex = -1;
      result.focus();
    } catch (error) {
      result.textContent = error.status === 403 ? `Not allowed: ${error.message}` : `Refused: ${error.message}`;
      result.className = "error";
      buttons.forEach((button) => { button.disabled = false; });
      pressed.focus();
    }
  };
  const form = el("form", { class: "controls", onsubmit: (e) => e.preventDefault() },
    el("label", { for: "vet-reason" }, "Reason", reason),
    el("label", { for: "vet-callable" }, callable, " Callable: functions:call tokens may run it in the sandbox"),
    el("button", { type: "button", class: "primary", onclick: (e) => decide(true, e.currentTarget) }, "Approve"),
    el("button", { type: "button", onclick: (e) => decide(false, e.currentTarget) }, "Reject"));
  const diffLines = (s.diff || "").split("\n");
  return [
    el("h1", { tabindex: -1 }, revealed(`${s.name} v${s.version}`)),
    el("p", { class: "muted" }, revealed(`${s.status} · ${s.language} · licence ${s.licence ?? "–"} · origin ${s.origin ?? "–"} · ${!s.callable ? "not callable" : s.status === "vetted" ? "callable" : "callable once approved"}`)),
    el("h2", {}, "Gates"),
    dataTable("Automatic gates", [{ label: "gate", show: ([k]) => k }, { label: "result", show: ([, g]) => (g.passed === null ? "pending" : g.passed ? "pass" : "FAIL") },
      { label: "detail", show: ([, g]) => g.detail ?? "" }], Object.entries(s.gates || {})),
    el("h2", {}, s.previous ? `Changes since v${s.previous}` : "Code"),
    s.code_hidden ? el("p", { class: "muted" }, "Hidden: reading a snippet's code needs the store:read scope.")
      : s.previous ? el("pre", { class: "diff" }, diffLines.map((line) => el("div", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : null }, line ? revealed(line) : " ")))
      : el("pre", {}, revealed(s.code)),
    vetting(s, form),
    result,
    el("p", {}, el("a", { href: "#/store" }, "Back to the queue")),
  ];
}

// A decision is made on code read: without store:read the page offers none.
function vetting(s, form) {
  if (!session.can.vet) return el("p", { class: "muted" }, "Vetting needs the store:vet scope.");
  if (s.status !== "candidate") return el("p", { class: "muted" }, "Only candidates are vetted.");
  if (s.code_hidden) return el("p", { class: "muted" }, "Vetting here needs the store:read scope too, to read the code decided on.");
  return form;
}

async function runDetail(id) {
  const data = await api(`/v1/dashboard/evals/${encodeURIComponent(id)}`);
  return [
    el("h1", { tabindex: -1 }, `Run ${data.run.id}`),
    el("p", { class: "muted" }, `${data.run.suite} · ${when(data.run.created)} · ${data.run.status} · pass@1 ${pct(data.run.pass_at_1)}`),
    dataTable("Tasks", [{ label: "task", show: (t) => t.task_id }, { label: "samples", num: true, show: (t) => num(t.samples) },
      { label: "passed", num: true, show: (t) => num(t.passed) }, { label: "outcome", show: (t) => (t.passed ? "pass" : "fail") }], data.tasks),
    el("p", {}, el("a", { href: "#/evals" }, "All runs")),
  ];
}

async function compareRuns(a, b) {
  if (!a || !b) return [el("h1", { tabindex: -1 }, "Compare runs"), el("p", {}, "Choose two runs to compare on the ", el("a", { href: "#/evals" }, "Evaluations"), " page.")];
  const data = await api(`/v1/dashboard/evals/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  return [
    el("h1", { tabindex: -1 }, "Compare runs"),
    el("p", {}, `A ${data.a} and B ${data.b}: ${data.tasks} common tasks, pass@1 ${pct(data.pass_a)} in A and ${pct(data.pass_b)} in B.`),
    el("p", { id: "compare-verdict" }, `pass@1 of B minus A: ${signedPct(data.difference)} (${Math.round(data.confidence * 100)}% CI ${signedPct(data.low)} to ${signedPct(data.high)}); `
      + `B better on ${num(data.better)}, worse on ${num(data.worse)} tasks; exact sign test p = ${Number(data.p_value.toPrecision(3))}.`),
    // What the two were made with that differs: a difference is read for what it is.
    ...(Object.keys(data.differences).length ? [el("p", { class: "error" }, "Made differently: ",
      Object.entries(data.differences).map(([name, d]) => `${name} (${d.a ?? "none"} in A, ${d.b ?? "none"} in B)`).join(", "))] : []),
    dataTable("Tasks whose outcome differs", [{ label: "task", show: (t) => t.task_id }, { label: "A", show: (t) => (t.a ? "pass" : "fail") },
      { label: "B", show: (t) => (t.b ? "pass" : "fail") }], data.changed),
    el("p", {}, el("a", { href: "#/evals" }, "All runs")),
  ];
}

// The usage report's query; an empty until is left out, which the server reads as now.
function usageQuery(since, until, by) {
  const query = new URLSearchParams({ since });
  if (until) query.set("until", until);
  query.set("by", by);
  return query.toString();
}

async function exportCsv(query, by, status) {
  let text;
  status.textContent = "";
  status.className = "";
  try {
    text = await api(`/v1/dashboard/usage?${query}&format=csv`);
  } catch (error) {
    // A refusal (over the token's limit, the server gone) is said here, not lost in the console.
    if (error.status !== 401) { status.textContent = `Could not export: ${error.message}`; status.className = "error"; }
    return;
  }
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: `tether-usage-${by}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
}

// ---- audit verification, in the browser ----------------------------------------------

const b64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const concat = (...parts) => { const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0)); let i = 0; for (const p of parts) { out.set(p, i); i += p.length; } return out; };
const sha256 = async (data) => new Uint8Array(await crypto.subtle.digest("SHA-256", data));
const hex = (data) => [...data].map((x) => x.toString(16).padStart(2, "0")).join("");
const equal = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);

async function verifyNote(note, verifierKey) {
  // name+hash+key: names hold no "+", base64 keys may.
  const [name, keyHash, ...rest] = verifierKey.split("+");
  if (!rest.length) throw new Error("the verifier key should read name+hash+key");
  const key = b64(rest.join("+"));
  if (key.length !== 33 || key[0] !== 1) throw new Error("the verifier key is not an Ed25519 key");
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint is not a signed note");
  const body = note.slice(0, split + 1);
  const line = note.slice(split + 2).split("\n").find((l) => l.startsWith(`\u2014 ${name} `));
  if (!line) throw new Error(`the checkpoint has no signature by ${name}`);
  const signed = b64(line.slice(`\u2014 ${name} `.length));
  const publicKey = await crypto.subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
  // A signature by another key (its key hash differs) is as invalid as a forged one.
  const good = hex(signed.slice(0, 4)) === keyHash
    && await crypto.subtle.verify({ name: "Ed25519" }, publicKey, signed.slice(4), new TextEncoder().encode(body));
  const [origin, size, root] = body.trimEnd().split("\n");
  return { good, origin, size: Number(size), root: b64(root) };
}

async function verifyInclusion(record, seq, size, proof, root) {
  // RFC 9162, 2.1.3.2: fold the audit path from the record's own leaf hash.
  let node = await sha256(concat(new Uint8Array([0]), record));
  let fn = seq, sn = size - 1;
  for (const sibling of proof.map(b64)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      node = await sha256(concat(new Uint8Array([1]), sibling, node));
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      node = await sha256(concat(new Uint8Array([1]), node, sibling));
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(node, root);
}

async function verifyRecord(verifierKey, seq, result) {
  result.replaceChildren();
  if (!window.crypto?.subtle) {
    result.append(el("p", { class: "error" }, "This browser cannot verify here: WebCrypto needs HTTPS or localhost."));
    return;
  }
  try {
    const proof = await api(`/v1/dashboard/audit/proof/${seq}`);
    const note = await verifyNote(proof.checkpoint, verifierKey);
    const record = b64(proof.record);
    const included = note.good && await verifyInclusion(record, seq, note.size, proof.proof, note.root);
    result.append(
      el("p", { class: note.good ? "ok" : "error", id: "signature-verdict" }, note.good ? `Signature valid: checkpoint of ${note.size} records by ${note.origin}.` : "Signature INVALID: this checkpoint was not signed by that key."),
      el("p", { class: included ? "ok" : "error", id: "inclusion-verdict" }, included ? `Record ${seq} is included in that checkpoint.` : `Record ${seq} is NOT proven to be in that checkpoint.`),
      el("pre", { "data-name": `Record ${seq}` }, new TextDecoder().decode(record)));
    watchScrolling(result);
  } catch (error) {
    result.append(el("p", { class: "error" }, error instanceof ApiError ? `Could not get the proof: ${error.message}` : `Verification failed: ${error.message}`));
  }
}

// ---- login, navigation ---------------------------------------------------------------

function loginPage(message, failed = Boolean(message)) {
  // What went wrong is the field's description: read again when the focus comes back to it.
  const input = el("input", { id: "token", type: "password", autocomplete: "off", required: true,
    "aria-describedby": "login-error", "aria-invalid": failed && "true" });
  const error = el("p", { class: "error", role: "alert", id: "login-error" }, message || "");
  const refused = (text) => { error.textContent = text; input.setAttribute("aria-invalid", "true"); input.focus(); };
  const form = el("form", { class: "login", onsubmit: async (e) => {
    e.preventDefault();
    // A header carries printable ASCII only: fetch would refuse a token pasted with a curly
    // quote or an invisible space, and that would read as a server that did not answer.
    if (!/^[\x20-\x7e]+$/.test(input.value.trim())) {
      refused("This is not a token: it holds characters no token has (tokens read tth_ and letters, digits, '-' or '_'). Paste it again, without quotes around it.");
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await start();
    } catch (failure) {
      sessionStorage.removeItem(TOKEN_KEY);
      refused(failure.status === 403 ? `This token cannot open the dashboard: ${failure.message}` : `Could not log in: ${failure.message}`);
    }
  } },
  el("h1", { tabindex: -1 }, "Log in"),
  el("p", {}, "Use a tether token with the dashboard scope (tether token create --scopes dashboard)."),
  el("label", { for: "token" }, "Token", input), el("button", { type: "submit", class: "primary" }, "Log in"), error);
  main.replaceChildren(form);
  titled();
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  input.focus();
}

// The window's title names the page shown, as its heading does: in a screen reader's
// list of windows, the browser's history and its tabs one page is told from another.
function titled() {
  const heading = main.querySelector("h1")?.textContent;
  document.title = heading ? `${heading} · tether dashboard` : "tether dashboard";
}

function logout(message, refused = true) {
  sessionStorage.removeItem(TOKEN_KEY);
  session = null;
  loginPage(message, refused);
}

function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

let routing = 0;  // the latest navigation; an older one that finishes later is dropped
// A page redrawn for a choice made on it (a period, a grouping) keeps the focus on that
// control, so a keyboard user can go on through its options; a new page focuses its title.
let keepFocusOn = null;

async function route() {
  if (!session) return;
  const mine = ++routing;
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const [, page, ...rest] = path.split("/");
  const params = new URLSearchParams(query || "");
  const render = pages[page] ? pages[page] : pages.overview;
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${page}`);
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  main.setAttribute("aria-busy", "true");
  let shown;
  try {
    // Inside the try: a malformed escape in the address is shown like any other problem.
    const id = rest.length ? decodeURIComponent(rest.join("/")) : null;
    shown = (await render(params, id)).filter(Boolean);
  } catch (error) {
    if (error.status === 401) {  // logged out: the login page is shown already
      main.removeAttribute("aria-busy");
      return;
    }
    shown = [el("h1", { tabindex: -1 }, "Could not load"), problem(error)];
  }
  if (mine !== routing) return;  // the viewer has moved on meanwhile
  scrollers.disconnect();  // the page before's boxes are gone
  main.replaceChildren(...shown);
  watchScrolling(main);
  main.removeAttribute("aria-busy");
  titled();
  const kept = keepFocusOn && document.getElementById(keepFocusOn);
  keepFocusOn = null;
  (kept || main.querySelector("h1"))?.focus();
}

async function start() {
  session = await api("/v1/dashboard/session");
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  document.getElementById("who").replaceChildren(...revealed(`${session.principal} · ${session.model}`));
  await route();
}

document.getElementById("logout").addEventListener("click", () => logout("Logged out.", false));
// The address is the page's route: following "#main" would leave it for an unknown page.
document.querySelector(".skip").addEventListener("click", (e) => { e.preventDefault(); main.focus(); });
window.addEventListener("hashchange", route);
if (sessionStorage.getItem(TOKEN_KEY)) start().catch((e) => { if (e.status !== 401) logout(`Could not log in: ${e.message}`); });
else loginPage();
