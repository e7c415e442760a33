"use strict";
// Gatehouse access-log page. No framework, no CDN: it calls the /v1 API
// with the bearer token (taken once from the URL fragment #token=..., a
// paste, or `gatehouse logs open`, then kept in sessionStorage for this
// tab only) and draws the answers, the histogram as hand-made SVG. The
// whole search state lives in the URL fragment, which browsers never send
// to the server; the token is removed from the fragment as soon as it is
// read.
(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "gatehouse_token";
  // Every field of a record, in API order; the first ten are shown by default.
  const FIELDS = ["time", "route", "method", "path", "status", "decision", "subject", "client_ip", "duration_us", "response_flags",
    "request_id", "kind", "log_type", "node", "node_group", "authority", "query", "bytes_in", "bytes_out", "client_port",
    "tls_version", "tls_sni", "peer_principal", "user_agent", "headers", "upstream_cluster", "upstream_host",
    "provider", "auth_kind", "apikey_id", "rule", "batch", "index"];
  const DEFAULT_COLS = FIELDS.slice(0, 10);
  const LABELS = { duration_us: "ms", client_ip: "client ip", response_flags: "flags" };
  // Fields a click filters on: the API parameter of the same name.
  const FILTERABLE = new Set(["route", "method", "status", "decision", "subject", "client_ip", "request_id", "node", "node_group",
    "authority", "user_agent", "upstream_cluster", "provider", "auth_kind", "apikey_id", "rule", "response_flags", "path"]);

  const form = $("filters");
  const tokenInput = $("token");
  let cols = DEFAULT_COLS.slice();
  let sort = { col: "", dir: "" };
  let rows = [];
  let cursor = "";
  let lastSummary = null;

  // --- token: fragment -> sessionStorage, never into a URL again ---
  function takeTokenFromFragment() {
    const h = new URLSearchParams(location.hash.slice(1));
    const tok = h.get("token");
    if (tok) {
      sessionStorage.setItem(TOKEN_KEY, tok);
      h.delete("token");
      history.replaceState(null, "", location.pathname + (h.toString() ? "#" + h.toString() : ""));
    }
  }
  takeTokenFromFragment();
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
  tokenInput.addEventListener("change", () => {
    sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
    search(false);
  });
  const token = () => tokenInput.value.trim();

  // --- state <-> URL fragment ---
  function filterParams() {
    const p = new URLSearchParams();
    for (const el of form.elements) {
      if (el.name && el.name !== "limit" && el.value.trim() !== "") p.set(el.name, el.value.trim());
    }
    return p;
  }
  function saveState() {
    const p = filterParams();
    p.set("limit", form.elements.limit.value);
    if (cols.join(",") !== DEFAULT_COLS.join(",")) p.set("cols", cols.join(","));
    if (sort.col) p.set("sort", (sort.dir === "desc" ? "-" : "") + sort.col);
    history.replaceState(null, "", location.pathname + "#" + p.toString());
  }
  function loadState() {
    const h = new URLSearchParams(location.hash.slice(1));
    if (h.size === 0) return;
    for (const el of form.elements) {
      if (el.name) el.value = h.get(el.name) || (el.name === "limit" ? "100" : "");
    }
    if (!h.get("since")) form.elements.since.value = "15m";
    const c = (h.get("cols") || "").split(",").filter((x) => FIELDS.includes(x));
    if (c.length) cols = c;
    const s = h.get("sort") || "";
    if (s) sort = { col: s.replace(/^-/, ""), dir: s.startsWith("-") ? "desc" : "asc" };
  }

  // --- API ---
  async function call(path, p) {
    let resp;
    try {
      resp = await fetch(path + "?" + p.toString(), { headers: { Authorization: "Bearer " + token() } });
    } catch (e) {
      throw new Error("the query API did not answer (" + e.message + "); is `gatehouse accesslog` or `gatehouse dev` running?");
    }
    let body;
    try { body = await resp.json(); } catch (e) { body = {}; }
    if (resp.status === 401) {
      $("token-help").hidden = false;
      throw new Error("401: the token was not accepted. Paste the token from <data-dir>/accesslog-token, or open the page with `gatehouse logs open`.");
    }
    if (!resp.ok) throw new Error(resp.status + ": " + (body.error || resp.statusText));
    return body;
  }

  // --- time ---
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  function localText(iso) {
    const d = new Date(iso);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }
  function toLocalInput(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function setRange(since, until) {
    form.elements.since.value = since;
    form.elements.until.value = until || "";
  }
  for (const b of $("presets").querySelectorAll("button")) {
    b.addEventListener("click", () => { setRange(b.dataset.since, ""); search(false); });
  }
  for (const id of ["from", "to"]) {
    $(id).addEventListener("change", () => {
      const v = $(id).value;
      if (!v) return;
      const iso = new Date(v).toISOString();
      if (id === "from") form.elements.since.value = iso; else form.elements.until.value = iso;
    });
  }
  function markPreset() {
    for (const b of $("presets").querySelectorAll("button")) {
      b.classList.toggle("on", b.dataset.since === form.elements.since.value && !form.elements.until.value);
    }
  }

  // --- filters by click ---
  function addFilter(field, value, negate) {
    if (!form.elements[field]) return;
    if (field === "status" && value === "0") return;
    form.elements[field].value = (negate ? "!" : "") + value;
    if (form.elements[field].closest("details")) form.elements[field].closest("details").open = true;
    search(false);
  }

  // --- rendering ---
  function fmt(r, f) {
    const v = r[f];
    if (f === "duration_us") return (v / 1000).toFixed(1);
    if (v === undefined || v === null) return "";
    return String(v);
  }
  function renderHead() {
    const tr = $("results").querySelector("thead tr");
    tr.replaceChildren();
    for (const c of cols) {
      const th = document.createElement("th");
      th.textContent = LABELS[c] || c;
      th.dataset.col = c;
      th.title = "sort by " + c;
      if (sort.col === c) th.className = sort.dir;
      th.addEventListener("click", () => {
        sort = { col: c, dir: sort.col === c && sort.dir === "asc" ? "desc" : "asc" };
        saveState();
        renderHead();
        renderRows();
      });
      tr.appendChild(th);
    }
  }
  function sorted() {
    if (!sort.col) return rows;
    const c = sort.col, k = sort.dir === "desc" ? -1 : 1;
    return rows.slice().sort((a, b) => {
      const x = a[c], y = b[c];
      if (typeof x === "number" && typeof y === "number") return (x - y) * k;
      return String(x).localeCompare(String(y)) * k;
    });
  }
  function renderRows() {
    const tbody = $("results").querySelector("tbody");
    tbody.replaceChildren();
    for (const r of sorted()) {
      const tr = document.createElement("tr");
      if (r.status === 429) tr.className = "limited";
      else if (r.decision === "deny" || r.status === 401 || r.status === 403) tr.className = "denied";
      for (const c of cols) {
        const td = document.createElement("td");
        td.textContent = c === "time" ? localText(r.time) : fmt(r, c);
        if (c === "time") td.title = r.time + " (UTC)";
        if (FILTERABLE.has(c) && td.textContent !== "") {
          td.className = "v";
          td.title = (td.title ? td.title + "; " : "") + "click: filter on this value, alt-click: exclude it";
          td.addEventListener("click", (ev) => { ev.stopPropagation(); addFilter(c, fmt(r, c), ev.altKey); });
        }
        tr.appendChild(td);
      }
      tr.addEventListener("click", () => showDetail(r, tr));
      tbody.appendChild(tr);
    }
  }
  function showDetail(r, tr) {
    for (const s of document.querySelectorAll("tr.selected")) s.classList.remove("selected");
    tr.classList.add("selected");
    const dl = $("detail-fields");
    dl.replaceChildren();
    const keys = FIELDS.concat(Object.keys(r).filter((k) => !FIELDS.includes(k)));
    for (const k of keys) {
      if (!(k in r)) continue;
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.dataset.field = k;
      dd.textContent = k === "time" ? localText(r.time) + " local · " + r.time + " UTC" : fmt(r, k) || "—";
      if (FILTERABLE.has(k) && fmt(r, k) !== "") {
        dd.title = "click: filter on this value, alt-click: exclude it";
        dd.addEventListener("click", (ev) => addFilter(k, fmt(r, k), ev.altKey));
      }
      dl.append(dt, dd);
    }
    $("detail").hidden = false;
  }
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });

  function renderColumnChooser() {
    const box = $("column-list");
    box.replaceChildren();
    for (const f of FIELDS) {
      const l = document.createElement("label");
      const cb = document.createElement("input");
      cb.type = "checkbox";
      cb.value = f;
      cb.checked = cols.includes(f);
      cb.addEventListener("change", () => {
        cols = FIELDS.filter((x) => (x === f ? cb.checked : cols.includes(x)));
        if (!cols.length) cols = ["time"];
        saveState();
        renderHead();
        renderRows();
      });
      l.append(cb, " " + (LABELS[f] || f));
      box.appendChild(l);
    }
  }

  function renderTop(field, groups) {
    const ol = $("top-" + field);
    if (!ol) return;
    ol.replaceChildren();
    for (const g of groups) {
      const li = document.createElement("li");
      li.textContent = (g.key || "(none)") + " — " + g.count.toLocaleString() + (g.denied ? " (" + g.denied.toLocaleString() + " denied)" : "");
      li.dataset.key = g.key;
      li.dataset.count = g.count;
      li.title = "click: filter on it, alt-click: exclude it";
      if (g.key) li.addEventListener("click", (ev) => addFilter(field, g.key, ev.altKey));
      ol.appendChild(li);
    }
  }

  // --- histogram: stacked allowed / denied / rate-limited, axes, drag to zoom ---
  const NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function renderHistogram(s) {
    const svg = $("histogram");
    svg.replaceChildren();
    const W = Math.max(svg.clientWidth || svg.parentNode.clientWidth || 600, 300), H = 170;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const L = 48, R = 8, T = 8, B = 22, pw = W - L - R, ph = H - T - B;
    const t0 = new Date(s.since).getTime(), t1 = new Date(s.until).getTime();
    const span = Math.max(t1 - t0, 1), bms = s.bucket_seconds * 1000;
    const maxC = Math.max(1, ...s.buckets.map((b) => b.count));
    const x = (t) => L + ((t - t0) / span) * pw;
    const y = (v) => T + ph - (v / maxC) * ph;
    // y axis: 0, half, max
    for (const v of [...new Set([0, Math.round(maxC / 2), maxC])]) {
      svg.appendChild(el("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      svg.appendChild(el("text", { class: "axis-label", x: L - 4, y: y(v) + 3, "text-anchor": "end" }, v.toLocaleString()));
    }
    svg.appendChild(el("line", { class: "axis", x1: L, x2: L, y1: T, y2: T + ph }));
    svg.appendChild(el("line", { class: "axis", x1: L, x2: W - R, y1: T + ph, y2: T + ph }));
    // x axis: 5 local-time ticks
    for (let i = 0; i <= 4; i++) {
      const t = t0 + (span * i) / 4;
      const d = new Date(t);
      const label = span > 36e5 * 24 ? (d.getMonth() + 1) + "/" + d.getDate() + " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) : pad(d.getHours()) + ":" + pad(d.getMinutes()) + (span < 36e5 ? ":" + pad(d.getSeconds()) : "");
      svg.appendChild(el("text", { class: "axis-label", x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, label));
    }
    const bw = Math.max((bms / span) * pw - 1, 1);
    for (const b of s.buckets) {
      const bx = x(new Date(b.start).getTime());
      const limited = b.limited || 0, denied = b.denied - limited, allowed = b.count - b.denied;
      let base = 0;
      for (const [cls, v, what] of [["bar-allow", allowed, "allowed"], ["bar-denied", denied, "denied"], ["bar-limited", limited, "rate-limited"]]) {
        if (v <= 0) continue;
        const r = el("rect", { class: cls, x: bx, width: bw, y: y(base + v), height: y(base) - y(base + v) });
        r.appendChild(el("title", {}, localText(b.start) + " (" + b.start + " UTC): " + v + " " + what + " of " + b.count));
        svg.appendChild(r);
        base += v;
      }
    }
    // drag to zoom
    let startX = null, band = null;
    const px = (ev) => { const rect = svg.getBoundingClientRect(); return ((ev.clientX - rect.left) / rect.width) * W; };
    svg.onmousedown = (ev) => {
      startX = Math.min(Math.max(px(ev), L), W - R);
      band = el("rect", { class: "zoom", x: startX, y: T, width: 0, height: ph });
      svg.appendChild(band);
      ev.preventDefault();
    };
    svg.onmousemove = (ev) => {
      if (startX === null) return;
      const cx = Math.min(Math.max(px(ev), L), W - R);
      band.setAttribute("x", String(Math.min(cx, startX)));
      band.setAttribute("width", String(Math.abs(cx - startX)));
    };
    svg.onmouseup = (ev) => {
      if (startX === null) return;
      const cx = Math.min(Math.max(px(ev), L), W - R);
      const a = Math.min(cx, startX), b = Math.max(cx, startX);
      startX = null;
      if (b - a < 3) { band.remove(); return; }
      const ta = t0 + ((a - L) / pw) * span, tb = t0 + ((b - L) / pw) * span;
      setRange(new Date(Math.floor(ta)).toISOString(), new Date(Math.ceil(tb)).toISOString());
      search(false);
    };
  }

  // --- search ---
  function setStatus(text, cls) {
    const st = $("status");
    st.className = cls || "";
    st.textContent = text;
  }
  let seq = 0; // only the newest search renders (a paste and a click may overlap)
  async function search(append) {
    const my = ++seq;
    $("status").dataset.done = "";
    if (!token()) {
      $("token-help").hidden = false;
      setStatus("Paste the API token above to search (or open the page with `gatehouse logs open`).", "empty");
      $("status").dataset.done = "1";
      return;
    }
    if (!append) saveState();
    markPreset();
    setStatus("loading…", "loading");
    try {
      const p = filterParams();
      const lp = new URLSearchParams(p);
      lp.set("limit", form.elements.limit.value);
      if (append && cursor) lp.set("cursor", cursor);
      const [logs, summary] = await Promise.all([
        call("/v1/logs", lp),
        append ? Promise.resolve(lastSummary) : call("/v1/summary", p),
      ]);
      if (my !== seq) return;
      $("token-help").hidden = true;
      rows = append ? rows.concat(logs.records) : logs.records;
      cursor = logs.next_cursor || "";
      $("more").hidden = !cursor;
      if (!append) {
        lastSummary = summary;
        for (const f in summary.top) renderTop(f, summary.top[f]);
        renderHistogram(summary);
        $("from").value = toLocalInput(new Date(summary.since));
        $("to").value = toLocalInput(new Date(summary.until));
        $("from").title = summary.since + " (UTC)";
        $("to").title = summary.until + " (UTC)";
      }
      renderHead();
      renderRows();
      const total = lastSummary ? lastSummary.total : rows.length;
      $("total").textContent = "showing " + rows.length.toLocaleString() + " of " + total.toLocaleString() + " matches (page size " + form.elements.limit.value + ")";
      $("total").dataset.total = String(total);
      if (total === 0) {
        setStatus("No requests match between " + localText(lastSummary.since) + " and " + localText(lastSummary.until) + ". Widen the time range (try 24h or 7d) or clear the filters.", "empty");
      } else {
        setStatus(total.toLocaleString() + " matches · " + (lastSummary.denied || 0).toLocaleString() + " denied · " + (lastSummary.limited || 0).toLocaleString() + " rate-limited");
      }
    } catch (e) {
      if (my !== seq) return;
      setStatus(String(e.message || e), "error");
    }
    $("status").dataset.done = "1";
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); search(false); });
  $("clear").addEventListener("click", () => {
    for (const el of form.elements) if (el.name && el.name !== "since" && el.name !== "until" && el.name !== "limit") el.value = "";
    search(false);
  });
  $("more").addEventListener("click", () => search(true));

  // --- export: the whole result, streamed, with progress and a visible error ---
  async function exportAs(format) {
    const st = $("export-status");
    st.className = "";
    st.dataset.done = "";
    const p = filterParams();
    p.set("format", format);
    try {
      const resp = await fetch("/v1/export?" + p.toString(), { headers: { Authorization: "Bearer " + token() } });
      if (!resp.ok) {
        let msg = resp.statusText;
        try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
        throw new Error("export failed: " + resp.status + ": " + msg);
      }
      const reader = resp.body.getReader();
      const parts = [];
      let bytes = 0, lines = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        bytes += value.length;
        for (const c of value) if (c === 10) lines++;
        st.textContent = "exporting… " + lines.toLocaleString() + " lines, " + (bytes / 1024).toFixed(0) + " KiB";
      }
      const records = format === "csv" ? Math.max(lines - 1, 0) : lines;
      const blob = new Blob(parts, { type: format === "csv" ? "text/csv" : "application/x-ndjson" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "gatehouse-logs." + format;
      document.body.appendChild(a);
      a.click();
      a.remove();
      st.textContent = "exported " + records.toLocaleString() + " records (" + format + ")";
      st.dataset.records = String(records);
    } catch (e) {
      st.className = "error";
      st.textContent = String(e.message || e);
    }
    st.dataset.done = "1";
  }
  $("export-ndjson").addEventListener("click", () => exportAs("ndjson"));
  $("export-csv").addEventListener("click", () => exportAs("csv"));

  loadState();
  renderColumnChooser();
  renderHead();
  window.addEventListener("resize", () => { if (lastSummary) renderHistogram(lastSummary); });
  search(false);
})();
