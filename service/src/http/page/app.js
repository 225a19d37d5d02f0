// Tarn's status page: one ES module, no build step, no other host. Every figure comes from the
// HTTP API with the token the user signed in with (kept in this tab's session storage), so the
// page shows what that token's role may see. Text from the server is only ever set as text.

const $ = (id) => document.getElementById(id);
// Figures are asked for again every 2 s, and every half second while a table loads.
const POLL_MS = 2000;
const BUSY_POLL_MS = 500;
const BUSY = new Set(["LOADING", "UNLOADING", "INRECOVERY"]);
const ROLES = { reader: 0, loader: 1, admin: 2 };

let token = sessionStorage.getItem("tarn.token") || "";
let who = null;
let timer = null;
let busy = false;
// Bumped at each change of view: a poll of the view left behind stops.
let generation = 0;
let tablesSeen = [];

// ---- the API ----

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = "GET", body, accept } = {}) {
  const headers = { authorization: `Bearer ${token}` };
  if (accept) headers.accept = accept;
  const r = await fetch(path, { method, body, headers });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (r.status === 401) {
    signOut("The token was refused: sign in again.");
    throw new ApiError(401, "unauthorized", "unauthorized");
  }
  if (!r.ok) {
    const e = data && data.error ? data.error : { code: String(r.status), message: text };
    throw new ApiError(r.status, e.code, e.message);
  }
  return data;
}

const sql = (statement) => api("/v1/sql", { method: "POST", body: statement });

// ---- formatting ----

const shortState = (s) => (s || "").replace(/_RPDGSTABSTATE$/, "");
const num = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString("en-US"));
function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function when(t) {
  if (!t) return "";
  const d = new Date(t);
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  const rel = Math.abs(s) < 60 ? `${Math.abs(s)} s` : Math.abs(s) < 3600 ? `${Math.round(Math.abs(s) / 60)} min`
    : `${Math.round(Math.abs(s) / 3600)} h`;
  return s >= 0 ? `${rel} ago` : `in ${rel}`;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function badge(state) {
  const s = shortState(state);
  return el("span", { class: `badge s-${s}`, text: s });
}

function card(pairs) {
  const dl = el("dl", { class: "card" });
  for (const [k, v] of pairs) dl.append(el("dt", { text: k }), el("dd", { text: v === "" || v === null || v === undefined ? "-" : String(v) }));
  return dl;
}

const can = (role) => who && ROLES[who.role] >= ROLES[role];

// ---- sign in and out ----

async function signIn(t) {
  token = t;
  who = await api("/v1/whoami");
  sessionStorage.setItem("tarn.token", token);
  $("login").hidden = true;
  $("tabs").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = `${who.name} (${who.role}${who.databases ? `: ${who.databases.join(", ")}` : ""})`;
  $("instance").textContent = who.instance;
  route();
}

function signOut(message = "") {
  token = "";
  who = null;
  generation++;
  sessionStorage.removeItem("tarn.token");
  clearTimeout(timer);
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("tabs").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("instance").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").value = "";
  $("token").focus();
}

// ---- views ----

function show(view) {
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  for (const a of document.querySelectorAll("#tabs a")) {
    if (a.dataset.view === view || (view === "table" && a.dataset.view === "tables")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function route() {
  if (!who) return;
  clearTimeout(timer);
  const mine = ++generation;
  const [view, ...rest] = (location.hash.slice(1) || "tables").split("/");
  const views = {
    tables: () => refreshTables(),
    table: () => refreshTable(decodeURIComponent(rest[0] || ""), decodeURIComponent(rest[1] || "")),
    regions: () => refreshRegions(),
    sql: null,
  };
  const name = view in views ? view : "tables";
  show(name);
  const poll = views[name];
  if (poll) {
    const again = async () => {
      await poll().catch(report);
      if (who && mine === generation) timer = setTimeout(again, busy ? BUSY_POLL_MS : POLL_MS);
    };
    again();
  } else {
    renderHistory();
    $("sql").focus();
  }
}

function report(e) {
  if (e instanceof ApiError && e.status === 401) return;
  const target = document.querySelector(".view:not([hidden]) [role=status]") || $("tables-updated");
  target.textContent = e.message;
}

// ---- tables ----

async function refreshTables() {
  const { tables } = await api("/v1/tables");
  tablesSeen = tables;
  busy = tables.some((t) => BUSY.has(shortState(t.status.load_status)));
  const dbs = [...new Set(tables.map((t) => t.schema_name))].sort();
  const states = [...new Set(tables.map((t) => shortState(t.status.load_status)))].sort();
  fillSelect($("filter-db"), dbs);
  fillSelect($("filter-status"), states);
  renderTables();
  $("tables-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function fillSelect(select, values) {
  const keep = select.value;
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === values.join("\n")) return;
  select.replaceChildren(el("option", { value: "", text: "all" }), ...values.map((v) => el("option", { value: v, text: v })));
  select.value = values.includes(keep) ? keep : "";
}

function renderTables() {
  const db = $("filter-db").value;
  const st = $("filter-status").value;
  const rows = tablesSeen.filter((t) => (!db || t.schema_name === db) && (!st || shortState(t.status.load_status) === st));
  const body = $("tables").tBodies[0];
  body.replaceChildren(...rows.map((t) => {
    const s = t.status;
    const state = shortState(s.load_status);
    const statusCell = el("td", {}, badge(s.load_status));
    if (state === "LOADING" || state === "UNLOADING" || state === "INRECOVERY") {
      const pct = Number(s.load_progress || 0);
      statusCell.append(" ", el("progress", { max: "100", value: String(pct), "aria-label": `${t.schema_name}.${t.table_name} ${pct.toFixed(0)}%` }),
        el("span", { class: "muted", text: ` ${pct.toFixed(0)}%` }));
    }
    const reason = s.last_error || s.recovery_error;
    if (reason && (state === "STALE" || state === "RECOVERYFAILED" || state === "NOLOAD")) {
      statusCell.append(el("div", { class: "reason", text: reason }));
    }
    const name = `${t.schema_name}.${t.table_name}`;
    return el("tr", { "data-table": name },
      el("td", {}, el("a", { href: `#table/${encodeURIComponent(t.schema_name)}/${encodeURIComponent(t.table_name)}`, text: name })),
      statusCell,
      el("td", { class: "num", text: num(t.nrows) }),
      el("td", { class: "num", text: bytes(t.size_bytes) }),
      el("td", { class: "num", text: t.version ?? "" }),
      el("td", { text: s.source_region || "" }),
      el("td", { text: when(s.last_success), title: s.last_success || "" }),
      el("td", { text: when(s.next_refresh), title: s.next_refresh || "" }));
  }));
  $("tables-empty").hidden = tablesSeen.length > 0;
}

// ---- one table ----

let ddlFor = "";

async function refreshTable(db, table) {
  const name = `${db}.${table}`;
  $("table-title").textContent = name;
  // Another table's facts never stand under this one's title while its own are fetched.
  if ($("table-facts").dataset.table !== name) {
    $("table-facts").replaceChildren();
    delete $("table-facts").dataset.table;
  }
  const [one, hist] = await Promise.all([
    api(`/v1/tables/${encodeURIComponent(db)}/${encodeURIComponent(table)}`),
    api(`/v1/tables/${encodeURIComponent(db)}/${encodeURIComponent(table)}/refreshes`),
  ]);
  const s = one.status ? one.status.status : {};
  busy = BUSY.has(shortState(s.load_status));
  const row = one.status || {};
  const m = one.manifest || {};
  $("table-facts").replaceChildren(
    card([["Status", shortState(s.load_status)], ["Progress", `${Number(s.load_progress || 0).toFixed(0)}%`],
      ["Last error", s.last_error || ""]]),
    card([["Rows", num(row.nrows)], ["Memory", bytes(row.size_bytes)], ["Rejected rows", num(row.rejected_rows)]]),
    card([["Files", num(m.files)], ["Bytes of files", bytes(m.bytes)], ["Version", row.version ?? ""]]),
    card([["Source region", s.source_region || ""], ["Placement", s.placement || ""],
      ["Next refresh", s.next_refresh ? `${when(s.next_refresh)}` : ""]]),
  );
  $("table-facts").dataset.table = name;
  renderActions(db, table);
  if (ddlFor !== name) {
    ddlFor = name;
    const ddl = await sql(`SHOW CREATE TABLE \`${db}\`.\`${table}\``).catch((e) => ({ rows: [["", e.message]] }));
    $("table-ddl").textContent = ddl.rows && ddl.rows[0] ? ddl.rows[0][1] : "";
  }
  const history = hist.history.slice().reverse(); // oldest first
  $("history-chart").replaceChildren(historyChart(history));
  $("history").tBodies[0].replaceChildren(...hist.history.map((h) => {
    const r = h.report || {};
    return el("tr", {},
      el("td", { text: new Date(h.finished_at).toLocaleString(), title: h.finished_at }),
      el("td", { text: h.kind }),
      el("td", { class: h.error ? "error" : "", text: h.error ? h.error : "done" }),
      el("td", { class: "num", text: r.seconds !== undefined ? r.seconds.toFixed(3) : "" }),
      el("td", { class: "num", text: r.bytes_read !== undefined ? bytes(r.bytes_read) : "" }),
      el("td", { class: "num", text: h.report ? `${num((r.files_added || 0) + (r.files_changed || 0))} / ${num(r.files_reused)}` : "" }),
      el("td", { class: "num", text: r.version ?? "" }));
  }));
}

function renderActions(db, table) {
  const box = $("table-actions");
  if (box.dataset.for === `${db}.${table}`) return;
  box.dataset.for = `${db}.${table}`;
  box.replaceChildren();
  if (!can("loader")) return;
  const target = `\`${db}\`.\`${table}\``;
  const act = (label, run) => el("button", {
    type: "button",
    onclick: async (ev) => {
      ev.target.disabled = true;
      $("table-message").textContent = `${label}...`;
      try {
        await run();
        $("table-message").textContent = `${label}: started`;
      } catch (e) {
        $("table-message").textContent = `${label} failed: ${e.message}`;
      } finally {
        ev.target.disabled = false;
      }
    },
  }, label);
  box.append(
    act("Refresh", () => api(`/v1/tables/${encodeURIComponent(db)}/${encodeURIComponent(table)}/refresh?async=true`, { method: "POST" })),
    // A load answers when it is done: its progress shows meanwhile, so it is not awaited here.
    act("Load", async () => { sql(`ALTER TABLE ${target} SECONDARY_LOAD`).catch((e) => { $("table-message").textContent = `Load failed: ${e.message}`; }); }),
    act("Unload", () => sql(`ALTER TABLE ${target} SECONDARY_UNLOAD`)),
  );
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function historyChart(history) {
  const w = 640, h = 180, pad = 34;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": `${history.length} loads and refreshes: duration and bytes read` });
  if (!history.length) {
    root.append(svg("text", { x: pad, y: h / 2 }, "No loads or refreshes yet."));
    return root;
  }
  const secs = history.map((x) => (x.report ? x.report.seconds : 0));
  const read = history.map((x) => (x.report ? x.report.bytes_read : 0));
  const maxS = Math.max(...secs, 1e-3);
  const maxB = Math.max(...read, 1);
  const step = (w - 2 * pad) / history.length;
  root.append(svg("line", { class: "axis", x1: pad, y1: h - pad, x2: w - pad, y2: h - pad }));
  root.append(svg("text", { x: 2, y: pad - 8 }, `${maxS.toFixed(2)} s`));
  root.append(svg("text", { x: w - pad - 60, y: pad - 8 }, bytes(maxB)));
  const pts = [];
  history.forEach((x, i) => {
    const bh = (secs[i] / maxS) * (h - 2 * pad);
    const bar = svg("rect", { class: "bar", x: pad + i * step + step * 0.15, y: h - pad - bh, width: step * 0.7, height: Math.max(bh, 1) });
    bar.append(svg("title", {}, `${x.kind} ${new Date(x.finished_at).toLocaleString()}: ${secs[i].toFixed(3)} s, ${bytes(read[i])} read`));
    root.append(bar);
    pts.push(`${pad + i * step + step / 2},${h - pad - (read[i] / maxB) * (h - 2 * pad)}`);
  });
  root.append(svg("polyline", { class: "line", points: pts.join(" ") }));
  return root;
}

// ---- regions ----

async function refreshRegions() {
  const r = await api("/v1/regions");
  busy = false;
  $("regions-summary").textContent = r.regions.length
    ? `Home region: ${r.home_region || "none"}. Failovers: ${r.failover_count}, failbacks: ${r.failback_count}.`
    : "No regions are configured: tables are read where their locations point.";
  $("regions-cards").replaceChildren(...r.regions.map((g) => {
    const c = card([["Region", g.name], ["Failovers / failbacks", `${g.failovers} / ${g.failbacks}`],
      ["Last probe", g.last_probe ? `${when(g.last_probe)} (${g.last_probe_ok ? "answered" : "failed"})` : ""],
      ["Last error", g.last_error || ""]]);
    c.prepend(el("div", {}, el("span", { class: `badge s-${g.state}`, text: g.state.replace("_", " ") })));
    return c;
  }));
  $("timeline").replaceChildren(timeline(r.events));
  $("events").replaceChildren(...r.events.slice().reverse().map((e) =>
    el("li", {}, el("span", { class: `badge s-${e.kind === "failover" ? "failed_over" : "healthy"}`, text: e.kind }),
      ` ${e.region}, ${new Date(e.at).toLocaleString()} (${when(e.at)})`)));
  $("routes").tBodies[0].replaceChildren(...r.tables.map((t) => el("tr", {},
    el("td", { text: t.table }),
    el("td", { text: t.source_region ? `${t.source_region}: ${t.source_location || ""}` : (t.source_location || "") }),
    el("td", { text: t.route_region || "" }),
    el("td", { class: "num", text: num(t.files_awaiting_replication) }),
    el("td", { text: t.waiting_for_replica || "" }))));
}

function timeline(events) {
  const w = 640, h = 60, pad = 20;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": `${events.length} failovers and failbacks` });
  root.append(svg("line", { class: "axis", x1: pad, y1: h / 2, x2: w - pad, y2: h / 2 }));
  if (!events.length) {
    root.append(svg("text", { x: pad, y: h / 2 - 8 }, "No failovers yet."));
    return root;
  }
  const t = events.map((e) => new Date(e.at).getTime());
  const lo = Math.min(...t), hi = Math.max(...t, lo + 1);
  events.forEach((e, i) => {
    const x = pad + ((t[i] - lo) / (hi - lo)) * (w - 2 * pad);
    const dot = svg("circle", { class: `ev-${e.kind}`, cx: x, cy: h / 2, r: 6 });
    dot.append(svg("title", {}, `${e.kind} ${e.region} ${new Date(e.at).toLocaleString()}`));
    root.append(dot);
  });
  return root;
}

// ---- SQL ----

function history() {
  try { return JSON.parse(sessionStorage.getItem("tarn.sql") || "[]"); } catch { return []; }
}

function renderHistory() {
  $("sql-history").replaceChildren(...history().map((h) => el("li", {},
    el("button", { type: "button", title: "Put it back in the box", onclick: () => { $("sql").value = h.sql; $("sql").focus(); } },
      `${h.ok ? "✓" : "✗"} ${h.sql} — ${h.note}`))));
}

async function runSql(ev) {
  ev.preventDefault();
  const text = $("sql").value.trim();
  if (!text) return;
  $("sql-error").textContent = "";
  $("sql-status").textContent = "running...";
  const started = performance.now();
  let entry;
  try {
    const r = await sql(text);
    const ms = performance.now() - started;
    const table = $("sql-result");
    const head = el("tr", {}, ...r.columns.map((c) => el("th", { scope: "col" }, c.name, el("div", { class: "muted", text: c.type }))));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...r.rows.map((row) =>
      el("tr", {}, ...row.map((v) => el("td", { text: v === null ? "NULL" : typeof v === "object" ? JSON.stringify(v) : String(v) }))))));
    const note = `${r.rows.length} row${r.rows.length === 1 ? "" : "s"} in ${ms.toFixed(0)} ms`;
    $("sql-status").textContent = note;
    entry = { sql: text, ok: true, note };
  } catch (e) {
    const ms = performance.now() - started;
    $("sql-status").textContent = `failed after ${ms.toFixed(0)} ms`;
    $("sql-error").textContent = `${e.code}: ${e.message}`;
    $("sql-result").replaceChildren();
    entry = { sql: text, ok: false, note: e.code };
  }
  sessionStorage.setItem("tarn.sql", JSON.stringify([entry, ...history()].slice(0, 50)));
  renderHistory();
}

// ---- wiring ----

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    await signIn($("token").value.trim());
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) $("login-error").textContent = e.message;
    else $("login-error").textContent = "That token is not known here.";
  }
});
$("logout").addEventListener("click", () => signOut());
$("filter-db").addEventListener("change", renderTables);
$("filter-status").addEventListener("change", renderTables);
$("sql-form").addEventListener("submit", runSql);
$("sql").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) $("sql-form").requestSubmit();
});
window.addEventListener("hashchange", route);

if (token) signIn(token).catch(() => signOut());
else signOut();
