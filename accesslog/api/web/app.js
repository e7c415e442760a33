"use strict";
// Gatehouse access-log page: calls the /v1 API with the bearer token the
// user typed (kept in sessionStorage only) and renders the answers.
(function () {
  const $ = (id) => document.getElementById(id);
  const tokenInput = $("token");
  tokenInput.value = sessionStorage.getItem("gatehouse_token") || "";
  tokenInput.addEventListener("change", () => sessionStorage.setItem("gatehouse_token", tokenInput.value));

  let cursor = "";

  function params() {
    const p = new URLSearchParams();
    for (const el of $("filters").elements) {
      if (el.name && el.value.trim() !== "") p.set(el.name, el.value.trim());
    }
    return p;
  }

  async function call(path, p) {
    const resp = await fetch(path + "?" + p.toString(), {
      headers: { Authorization: "Bearer " + tokenInput.value.trim() },
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error(resp.status + ": " + (body.error || resp.statusText));
    return body;
  }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }

  function renderRows(records, append) {
    const tbody = $("results").querySelector("tbody");
    if (!append) tbody.replaceChildren();
    for (const r of records) {
      const tr = document.createElement("tr");
      if (r.decision === "deny" || [401, 403, 429].includes(r.status)) tr.className = "denied";
      cell(tr, r.time);
      cell(tr, r.route);
      cell(tr, r.method);
      cell(tr, r.path + (r.query ? "?" + r.query : ""));
      cell(tr, String(r.status));
      cell(tr, r.decision);
      cell(tr, r.subject);
      cell(tr, r.client_ip);
      cell(tr, (r.duration_us / 1000).toFixed(1));
      cell(tr, r.response_flags);
      tbody.appendChild(tr);
    }
  }

  function renderTop(id, groups) {
    const ol = $(id);
    ol.replaceChildren();
    for (const g of groups) {
      const li = document.createElement("li");
      li.textContent = (g.key || "(none)") + " — " + g.count + (g.denied ? " (" + g.denied + " denied)" : "");
      li.dataset.key = g.key;
      li.dataset.count = g.count;
      ol.appendChild(li);
    }
  }

  function renderHistogram(h) {
    const svg = $("histogram");
    svg.replaceChildren();
    const ns = "http://www.w3.org/2000/svg";
    const W = 900, H = 140, n = h.buckets.length;
    if (n === 0) return;
    const maxCount = Math.max(...h.buckets.map((b) => b.count));
    const bw = W / n;
    h.buckets.forEach((b, i) => {
      for (const [cls, v] of [["bar-all", b.count], ["bar-denied", b.denied]]) {
        const r = document.createElementNS(ns, "rect");
        const hh = (v / maxCount) * (H - 10);
        r.setAttribute("class", cls);
        r.setAttribute("x", String(i * bw + (cls === "bar-denied" ? bw / 2 : 0)));
        r.setAttribute("width", String(Math.max(bw / 2 - 1, 1)));
        r.setAttribute("y", String(H - hh));
        r.setAttribute("height", String(hh));
        const t = document.createElementNS(ns, "title");
        t.textContent = b.start + ": " + v + (cls === "bar-denied" ? " denied" : " requests");
        r.appendChild(t);
        svg.appendChild(r);
      }
    });
  }

  async function search(append) {
    const status = $("status");
    status.className = "";
    status.textContent = "searching…";
    try {
      const p = params();
      if (append && cursor) p.set("cursor", cursor);
      const logs = await call("/v1/logs", p);
      renderRows(logs.records, append);
      cursor = logs.next_cursor || "";
      $("more").hidden = !cursor;
      if (!append) {
        const sp = params();
        sp.delete("limit");
        const [subj, ip, route, denied, hist] = await Promise.all([
          call("/v1/stats", withParam(sp, "group_by", "subject")),
          call("/v1/stats", withParam(sp, "group_by", "client_ip")),
          call("/v1/stats", withParam(sp, "group_by", "route")),
          call("/v1/stats", withParam(withParam(sp, "group_by", "client_ip"), "denied", "true")),
          call("/v1/histogram", sp),
        ]);
        renderTop("top-subject", subj.groups);
        renderTop("top-client_ip", ip.groups);
        renderTop("top-route", route.groups);
        renderTop("top-denied", denied.groups);
        renderHistogram(hist);
      }
      const n = $("results").querySelector("tbody").children.length;
      status.textContent = n + " rows";
      status.dataset.done = "1";
    } catch (e) {
      status.className = "error";
      status.textContent = String(e.message || e);
      status.dataset.done = "1";
    }
  }

  function withParam(p, k, v) {
    const q = new URLSearchParams(p);
    q.set(k, v);
    return q;
  }

  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("status").dataset.done = "";
    search(false);
  });
  $("more").addEventListener("click", () => search(true));
  $("export-csv").addEventListener("click", async (ev) => {
    ev.preventDefault();
    const p = params();
    p.set("format", "csv");
    const resp = await fetch("/v1/export?" + p.toString(), { headers: { Authorization: "Bearer " + tokenInput.value.trim() } });
    const blob = await resp.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "gatehouse-logs.csv";
    a.click();
  });
})();
