// imagegate's dashboard: plain JavaScript against the gateway's own API, no framework and no
// build step. The key and admin token live in sessionStorage only. Everything shown that comes
// from the API is set as text (never as HTML).
"use strict";

const store = sessionStorage;
const $ = (sel) => document.querySelector(sel);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike a style attribute
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// ---- API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body, form, token = store.getItem("key") } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, (data && data.error && data.error.message) || `${resp.status} ${resp.statusText}`);
  }
  return data;
}

// Server-sent events with an Authorization header (EventSource cannot send one).
async function* events(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${store.getItem("key")}`, Accept: "text/event-stream" } });
  if (!resp.ok || !resp.body) throw new ApiError(resp.status, `The event stream answered ${resp.status}.`);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const ev = { event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const at = line.indexOf(":");
        const field = at < 0 ? line : line.slice(0, at);
        const val = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
        if (field === "event") ev.event = val;
        else if (field === "data") ev.data += (ev.data ? "\n" : "") + val;
      }
      if (ev.data) yield ev;
    }
  }
}

// ---- formatting -----------------------------------------------------------------------------

const money = (x) => `$${(x || 0).toFixed(x >= 100 ? 0 : x >= 1 ? 2 : 3)}`;
const when = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : "");

function untilText(secs) {
  if (!secs) return "kept";
  const left = secs * 1000 - Date.now();
  if (left <= 0) return "expired";
  const days = Math.floor(left / 86400000);
  if (days >= 1) return `expires in ${days} d`;
  return `expires in ${Math.max(1, Math.round(left / 3600000))} h`;
}

// A thumbnail of a gateway image: resized by the gateway, once (other URLs are left as they are).
function thumb(url, width) {
  const u = new URL(url, location.href);
  if (u.origin === location.origin && u.pathname.startsWith("/images/")) {
    u.searchParams.set("w", String(width));
    u.searchParams.set("format", "auto");
  }
  return u.toString();
}

function badge(status) {
  return h("span", { class: `badge ${status}` }, status);
}

// ---- login and tabs -----------------------------------------------------------------------------

function loggedIn() {
  const key = store.getItem("key");
  const admin = store.getItem("admin");
  $("#login").hidden = true;
  $("#tabs").hidden = false;
  $("#logout").hidden = false;
  for (const b of document.querySelectorAll("#tabs button")) {
    b.hidden = b.dataset.needs === "key" ? !key : !admin;
  }
  show(key ? "playground" : "admin");
}

function show(tab) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === tab);
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== tab;
  ({ playground: loadModels, tasks: () => loadTasks(true), gallery: loadGallery, usage: loadUsage, admin: loadAdmin })[tab]();
}

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = $("#login-key").value.trim();
  const admin = $("#login-admin").value.trim();
  $("#login-error").textContent = "";
  if (!key && !admin) {
    $("#login-error").textContent = "Paste an API key or the admin token.";
    return;
  }
  try {
    if (key) await api("/v1/usage?days=1", { token: key });
    if (admin) await api("/admin/v1/keys", { token: admin });
  } catch (err) {
    $("#login-error").textContent = `Not accepted: ${err.message}`;
    return;
  }
  store.clear();
  if (key) store.setItem("key", key);
  if (admin) store.setItem("admin", admin);
  $("#login-key").value = "";
  $("#login-admin").value = "";
  loggedIn();
});

$("#logout").addEventListener("click", () => {
  store.clear();
  location.reload();
});

$("#tabs").addEventListener("click", (e) => {
  if (e.target.dataset.tab) show(e.target.dataset.tab);
});

// ---- playground -------------------------------------------------------------------------------

let refs = [];
let modelsLoaded = false;

async function loadModels() {
  if (modelsLoaded) return;
  try {
    const list = await api("/v1/models");
    const select = $("#gen-model");
    select.replaceChildren(...list.data.map((m) => h("option", { value: m.id }, m.id)));
    select.value = list.data.some((m) => m.id === "nano-banana-pro") ? "nano-banana-pro" : list.data[0].id;
    modelsLoaded = true;
  } catch (err) {
    $("#gen-status").textContent = err.message;
  }
}

function addRefs(files) {
  for (const f of files) if (/^image\/(png|jpeg|webp)$/.test(f.type)) refs.push(f);
  $("#ref-list").replaceChildren(
    ...refs.map((f, i) =>
      h("figure", { class: "ref" }, h("img", { src: URL.createObjectURL(f), alt: f.name }),
        h("button", { type: "button", class: "quiet", title: "Remove", onclick: () => { refs.splice(i, 1); addRefs([]); } }, "×")),
    ),
  );
}

$("#gen-refs").addEventListener("change", (e) => addRefs(e.target.files));
const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  addRefs(e.dataTransfer.files);
});

// An image linking to itself at full size, shown at `src`, with a caption.
function card(img, alt, src, ...caption) {
  return h("figure", { class: "card" },
    h("a", { href: img.url, target: "_blank", rel: "noopener" }, h("img", { src, alt: alt || "generated image", loading: "lazy" })),
    h("figcaption", {}, ...caption));
}

// A result image with its size and a download link; a thumbnail when `width` is given.
function imageCard(img, alt, width) {
  const name = (img.url || "").split("/").pop().split("?")[0] || "image";
  return card(img, alt, width ? thumb(img.url, width) : img.url,
    `${img.width || "?"}×${img.height || "?"} · `, h("a", { href: img.url, download: name }, "download"));
}

$("#gen-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const status = $("#gen-status");
  const button = $("#gen-submit");
  const fields = {
    model: $("#gen-model").value,
    prompt: $("#gen-prompt").value,
    n: Number($("#gen-n").value) || 1,
    image_size: $("#gen-size").value,
  };
  if ($("#gen-ratio").value) fields.aspect_ratio = $("#gen-ratio").value;
  $("#gen-images").replaceChildren();
  $("#gen-previews").replaceChildren();
  button.disabled = true;
  status.className = "status";
  status.textContent = "Submitting…";
  try {
    let task;
    if (refs.length) {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, String(v));
      for (const f of refs) form.append("image[]", f, f.name);
      task = await api("/v1/images/edits/async", { method: "POST", form });
    } else {
      task = await api("/v1/images/generations/async", { method: "POST", body: fields });
    }
    status.textContent = `Task ${task.id}: ${task.status}`;
    const started = Date.now();
    const tick = setInterval(() => {
      status.dataset.elapsed = `${Math.round((Date.now() - started) / 1000)} s`;
    }, 1000);
    try {
      await follow(task, status);
    } finally {
      clearInterval(tick);
    }
  } catch (err) {
    status.className = "status error";
    status.textContent = err.message;
  } finally {
    button.disabled = false;
  }
});

async function follow(task, status) {
  for await (const ev of events(`/v1/tasks/${encodeURIComponent(task.id)}/events`)) {
    const data = JSON.parse(ev.data);
    if (ev.event === "task.partial_image") {
      $("#gen-previews").append(h("figure", { class: "card draft" }, h("img", { src: data.url, alt: "draft" }), h("figcaption", {}, "draft")));
      continue;
    }
    const state = ev.event.replace(/^task\./, "");
    const where = data.queue_position != null ? ` (position ${data.queue_position})` : "";
    status.textContent = `Task ${data.id}: ${state}${where}`;
    if (state === "completed") {
      $("#gen-previews").replaceChildren();
      const images = (data.result && data.result.data) || [];
      $("#gen-images").replaceChildren(...images.map((img) => imageCard(img, data.request && data.request.prompt)));
      status.textContent = `Task ${data.id}: completed · ${images.length} image${images.length === 1 ? "" : "s"} · ${money(data.cost_usd)}`;
      return;
    }
    if (state === "failed" || state === "cancelled") {
      status.className = "status error";
      status.textContent = `Task ${data.id}: ${state}${data.error ? ` · ${data.error.message}` : ""}`;
      return;
    }
  }
}

// ---- tasks ------------------------------------------------------------------------------------------

let taskFilter = "";
let taskAfter = null;

async function loadTasks(fresh) {
  if (fresh) {
    taskAfter = null;
    $("#task-list").replaceChildren();
  }
  const q = new URLSearchParams({ limit: "25" });
  if (taskFilter) q.set("status", taskFilter);
  if (taskAfter) q.set("after", taskAfter);
  try {
    const page = await api(`/v1/tasks?${q}`);
    $("#task-list").append(...page.data.map(taskRow));
    if (fresh && !page.data.length) $("#task-list").append(h("p", { class: "hint" }, "No tasks."));
    taskAfter = page.last_id;
    $("#task-more").hidden = !page.has_more;
  } catch (err) {
    $("#task-list").append(h("p", { class: "error" }, err.message));
  }
}

function taskRow(t) {
  const prompt = (t.request && t.request.prompt) || "";
  const details = h("div", { class: "details", hidden: true });
  const row = h("div", { class: "task", "data-id": t.id },
    h("button", { class: "task-head", type: "button", onclick: () => { details.hidden = !details.hidden; } },
      badge(t.status), h("span", { class: "prompt" }, prompt || t.id), h("span", { class: "meta" }, `${t.model} · ${when(t.created_at)} · ${money(t.cost_usd)}`)),
    details);
  details.append(
    h("p", { class: "mono" }, t.id, t.batch_id ? ` · batch ${t.batch_id}` : "", ` · ${t.mode}`),
    t.error ? h("p", { class: "error" }, t.error.message) : null,
    h("div", { class: "grid small" }, ((t.result && t.result.data) || []).map((img) => imageCard(img, prompt, 240))),
  );
  if (t.status === "queued" || t.status === "running") {
    details.append(h("button", { type: "button", onclick: async (e) => {
      e.target.disabled = true;
      try {
        await api(`/v1/tasks/${encodeURIComponent(t.id)}/cancel`, { method: "POST" });
        loadTasks(true);
      } catch (err) {
        details.append(h("p", { class: "error" }, err.message));
      }
    } }, "Cancel"));
  }
  return row;
}

$("#task-filters").addEventListener("click", (e) => {
  if (e.target.dataset.status === undefined) return;
  taskFilter = e.target.dataset.status;
  for (const b of document.querySelectorAll("#task-filters button")) b.classList.toggle("on", b === e.target);
  loadTasks(true);
});
$("#task-more").addEventListener("click", () => loadTasks(false));

// ---- gallery ------------------------------------------------------------------------------------------

async function loadGallery() {
  const grid = $("#gallery-grid");
  try {
    const page = await api("/v1/tasks?status=completed&limit=60");
    const cards = [];
    for (const t of page.data) {
      for (const img of (t.result && t.result.data) || []) {
        if (!img.url) continue;
        const prompt = (t.request && t.request.prompt) || "";
        cards.push(card(img, prompt, thumb(img.url, 320), h("span", { class: "prompt" }, prompt),
          h("span", { class: "meta", title: img.expires_at ? `deleted at ${when(img.expires_at)}` : "" }, untilText(img.expires_at))));
      }
    }
    grid.replaceChildren(...(cards.length ? cards : [h("p", { class: "hint" }, "No images yet.")]));
  } catch (err) {
    grid.replaceChildren(h("p", { class: "error" }, err.message));
  }
}

// ---- usage --------------------------------------------------------------------------------------------

const COLORS = ["#2f6f5e", "#d08c2e", "#5b6fd6", "#c2536b", "#6a9c3d", "#8a5cc2"];

async function loadUsage() {
  try {
    const u = await api("/v1/usage?days=30");
    const totals = [
      ["Images", String(u.total_images)],
      ["Cost", money(u.total_cost_usd)],
      ["Spent", money(u.spent_usd)],
      ["Budget", u.budget_usd != null ? money(u.budget_usd) : "none"],
    ];
    $("#usage-totals").replaceChildren(...totals.map(([k, v]) => h("div", { class: "total" }, h("span", {}, k), h("strong", {}, v))));
    drawChart(u.data);
    $("#usage-table tbody").replaceChildren(...u.data.map((r) =>
      h("tr", {}, h("td", {}, r.date), h("td", {}, r.model), h("td", {}, String(r.images)), h("td", {}, money(r.cost_usd)))));
  } catch (err) {
    $("#usage-totals").replaceChildren(h("p", { class: "error" }, err.message));
  }
}

// Cost by day (30 days to today, UTC), stacked by model, as SVG.
function drawChart(rows) {
  const days = [];
  const today = new Date();
  for (let i = 29; i >= 0; i--) days.push(new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i)).toISOString().slice(0, 10));
  const models = [...new Set(rows.map((r) => r.model))].sort();
  const cost = new Map(rows.map((r) => [`${r.date}|${r.model}`, r.cost_usd]));
  const perDay = days.map((d) => models.reduce((s, m) => s + (cost.get(`${d}|${m}`) || 0), 0));
  const max = Math.max(...perDay, 0.001);
  const W = 600, H = 200, pad = 30, bw = (W - pad) / days.length;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 20}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Cost by day and model, last 30 days");
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  el("line", { x1: pad, y1: H, x2: W, y2: H, class: "axis" });
  el("text", { x: 0, y: 12, class: "tick" }, money(max));
  el("text", { x: 0, y: H, class: "tick" }, "$0");
  days.forEach((d, i) => {
    let y = H;
    models.forEach((m, j) => {
      const c = cost.get(`${d}|${m}`) || 0;
      if (!c) return;
      const bh = Math.max(1, (c / max) * (H - 10));
      y -= bh;
      const r = el("rect", { x: pad + i * bw + 1, y, width: Math.max(1, bw - 2), height: bh, fill: COLORS[j % COLORS.length], class: "bar" });
      const t = document.createElementNS(ns, "title");
      t.textContent = `${d} · ${m} · ${money(c)}`;
      r.append(t);
    });
    const back = days.length - 1 - i;
    if (back % 7 === 0) el("text", { x: pad + (i + 0.5) * bw, y: H + 15, class: "tick", "text-anchor": back ? "middle" : "end" }, d.slice(5));
  });
  $("#usage-chart").replaceChildren(svg);
  $("#usage-legend").replaceChildren(...models.map((m, j) => h("span", {}, h("i", { style: `background:${COLORS[j % COLORS.length]}` }), m)));
}

// ---- admin ------------------------------------------------------------------------------------------------

const adminApi = (path, opts = {}) => api(path, { ...opts, token: store.getItem("admin") });

async function loadAdmin() {
  $("#admin-error").textContent = "";
  try {
    const [keys, channels, usage] = await Promise.all([
      adminApi("/admin/v1/keys"), adminApi("/admin/v1/channels"), adminApi("/admin/v1/usage?days=30"),
    ]);
    $("#key-table tbody").replaceChildren(...keys.data.map(keyRow));
    $("#channel-table tbody").replaceChildren(...channels.data.map(channelRow));
    $("#key-usage-table tbody").replaceChildren(...usageByKey(usage.data, keys.data));
  } catch (err) {
    $("#admin-error").textContent = err.message;
  }
}

// Everyone's usage rows (a day, a model, a key) summed per key, costliest first.
function usageByKey(rows, keys) {
  const names = new Map(keys.map((k) => [k.id, k.name || k.id]));
  const per = new Map();
  for (const r of rows) {
    const t = per.get(r.key_id) || { images: 0, cost: 0, models: new Set() };
    t.images += r.images;
    t.cost += r.cost_usd;
    t.models.add(r.model);
    per.set(r.key_id, t);
  }
  const sorted = [...per.entries()].sort((a, b) => b[1].cost - a[1].cost);
  if (!sorted.length) return [h("tr", {}, h("td", { colspan: 4, class: "hint" }, "No images in 30 days."))];
  return sorted.map(([id, t]) => h("tr", { "data-key": id },
    h("td", {}, names.get(id) || id), h("td", {}, String(t.images)), h("td", {}, money(t.cost)), h("td", {}, [...t.models].join(", "))));
}

function keyRow(k) {
  const limits = [
    k.rpm && `${k.rpm}/min`, k.max_concurrency && `${k.max_concurrency} at once`, k.daily_images && `${k.daily_images}/day`,
    k.budget_usd != null && `budget ${money(k.budget_usd)}`, k.retention && `kept ${k.retention}`,
  ].filter(Boolean).join(", ") || "none";
  return h("tr", { "data-id": k.id },
    h("td", {}, k.name || ""), h("td", { class: "mono" }, k.id), h("td", {}, limits), h("td", {}, money(k.spent_usd)),
    h("td", {}, k.revoked_at ? badge("revoked") : badge("active")),
    h("td", {}, k.revoked_at ? "" : h("button", { type: "button", class: "quiet", onclick: async () => {
      if (!confirm(`Revoke ${k.name || k.id}? Requests with it are refused at once.`)) return;
      try {
        await adminApi(`/admin/v1/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
        loadAdmin();
      } catch (err) {
        $("#admin-error").textContent = err.message;
      }
    } }, "Revoke")));
}

function channelRow(c) {
  const rate = c.recent_error_rate != null ? `${Math.round(c.recent_error_rate * 100)} %` : "";
  return h("tr", {},
    h("td", {}, c.name), h("td", {}, c.provider), h("td", {}, badge(c.state), c.disabled_reason ? ` ${c.disabled_reason}` : ""),
    h("td", {}, String(c.in_flight)), h("td", {}, rate),
    h("td", {}, c.state === "healthy" ? "" : h("button", { type: "button", class: "quiet", onclick: async () => {
      try {
        await adminApi(`/admin/v1/channels/${encodeURIComponent(c.name)}/enable`, { method: "POST" });
        loadAdmin();
      } catch (err) {
        $("#admin-error").textContent = err.message;
      }
    } }, "Enable")));
}

$("#key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { name: $("#key-name").value };
  const num = (sel) => ($(sel).value === "" ? undefined : Number($(sel).value));
  for (const [field, sel] of [["rpm", "#key-rpm"], ["max_concurrency", "#key-conc"], ["daily_images", "#key-daily"], ["budget_usd", "#key-budget"]]) {
    if (num(sel) !== undefined) body[field] = num(sel);
  }
  if ($("#key-retention").value) body.retention = $("#key-retention").value;
  $("#admin-error").textContent = "";
  try {
    const created = await adminApi("/admin/v1/keys", { method: "POST", body });
    const secret = $("#key-secret");
    secret.hidden = false;
    secret.replaceChildren("New key (shown once): ", h("code", { id: "new-key" }, created.key));
    $("#key-form").reset();
    loadAdmin();
  } catch (err) {
    $("#admin-error").textContent = err.message;
  }
});

// ---- start ------------------------------------------------------------------------------------------------

if (store.getItem("key") || store.getItem("admin")) loggedIn();
