// The web page of `indexer serve`: plain JavaScript over the JSON API under /api/.
// Everything that comes from the collection (paths, labels) is shown with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  index: null, view: "search",
  query: "", image: null, imageName: "", like: [],   // the current search
  hits: [], offset: 0, selected: -1, seq: 0,
  run: null, label: null, labelOffset: 0,
  item: null,
  audit: { type: "mislabel", findings: [], current: 0, labels: [], allowed: false, counts: {}, loaded: false },
};

function param(url, values) {
  const u = new URL(url, location.origin);
  for (const [k, v] of Object.entries(values)) {
    if (Array.isArray(v)) v.forEach((x) => u.searchParams.append(k, x));
    else if (v !== null && v !== undefined && v !== "") u.searchParams.set(k, v);
  }
  if (state.index) u.searchParams.set("index", state.index);
  return u.pathname + u.search;
}

async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return body;
}

const thumb = (id, size = 192) => param(`/api/items/${id}/thumbnail`, { size });
const baseName = (path) => path.split("::").pop().split("/").pop();
function say(text) { $("message").textContent = text || ""; }

// -- search -----------------------------------------------------------------------------------------

function card(hit, index, onOpen) {
  const el = document.createElement("div");
  el.className = "card";
  el.tabIndex = -1;
  el.dataset.id = hit.id;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.src = thumb(hit.id);
  img.alt = hit.caption || baseName(hit.path);
  el.title = [hit.caption, hit.taken, hit.camera].filter(Boolean).join(" · ");
  el.appendChild(img);
  const caption = document.createElement("div");
  caption.className = "caption";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = baseName(hit.path);
  name.title = hit.path;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  caption.append(name, score);
  el.appendChild(caption);
  if (hit.duplicates && hit.duplicates.length) {
    const d = document.createElement("span");
    d.className = "dups";
    d.textContent = `+${hit.duplicates.length} same`;
    el.appendChild(d);
  }
  const like = document.createElement("button");
  like.className = "like";
  like.textContent = "more like this";
  like.title = "Search for pictures like this one (m)";
  like.addEventListener("click", (e) => { e.stopPropagation(); moreLike(hit); });
  el.appendChild(like);
  el.addEventListener("click", () => onOpen(index));
  return el;
}

async function search(append = false) {
  const seq = ++state.seq;
  const k = Math.max(1, Math.min(200, parseInt($("k").value, 10) || 40));
  const text = $("q").value.trim();
  if (!text && !state.image && !state.like.length) {
    state.hits = []; render(); say(""); $("more").hidden = true; return;
  }
  const offset = append ? state.offset + k : 0;
  const filters = { k, offset, path_filter: $("path-filter").value.trim(), min_score: $("min-score").value,
                    where: $("where").value.trim(), hybrid: $("hybrid").checked && text ? "true" : "" };
  let body;
  try {
    if (state.image) {
      const form = new FormData();
      form.append("image", state.image, state.imageName || "picture");
      if (text) form.append("q", text);
      for (const [key, value] of Object.entries(filters)) if (value !== "") form.append(key, value);
      body = await api(param("/api/search", {}), { method: "POST", body: form });
    } else {
      body = await api(param("/api/search", { q: text, like: state.like, ...filters }));
    }
  } catch (err) {
    if (seq === state.seq) say(err.message);
    return;
  }
  if (seq !== state.seq) return;  // a newer query was typed meanwhile
  state.offset = offset;
  state.hits = append ? state.hits.concat(body.hits) : body.hits;
  if (!append) state.selected = -1;
  say(state.hits.length ? "" : "No results.");
  $("status").textContent = `${state.hits.length} results in ${body.took_ms.toFixed(0)} ms`;
  $("more").hidden = body.hits.length < k;
  render();
}

function render() {
  const grid = $("results");
  grid.replaceChildren(...state.hits.map((hit, i) => card(hit, i, (j) => { select(j); openItem(state.hits[j].id); })));
  if (state.selected >= 0) select(state.selected);
}

function select(i) {
  const cards = $("results").children;
  if (!cards.length) return;
  state.selected = Math.max(0, Math.min(cards.length - 1, i));
  for (const c of cards) c.classList.remove("selected");
  const chosen = cards[state.selected];
  chosen.classList.add("selected");
  chosen.scrollIntoView({ block: "nearest" });
}

function moreLike(hit) {
  closeItem();
  showView("search");
  clearImage(false);
  state.like = [hit.id];
  $("q").value = "";
  $("q").placeholder = `Like ${baseName(hit.path)} — add + terms to steer, - terms to avoid`;
  search();
}

let typing = null;
$("q").addEventListener("input", () => {
  if (!$("q").value.trim() && !state.image) { state.like = []; $("q").placeholder = $("q").dataset.placeholder; }
  clearTimeout(typing);
  typing = setTimeout(() => search(), 180);
});
$("q").dataset.placeholder = $("q").placeholder;
$("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
for (const id of ["path-filter", "where", "hybrid", "min-score", "k"]) $(id).addEventListener("change", () => search());
$("more").addEventListener("click", () => search(true));

// -- search by a picture: drop, paste, or the camera button --------------------------------------------

function useImage(file) {
  if (!file || !file.type.startsWith("image/")) { say("That is not a picture."); return; }
  state.image = file;
  state.imageName = file.name || "pasted picture";
  state.like = [];
  $("image-chip").hidden = false;
  $("image-chip-name").textContent = state.imageName;
  $("image-chip-thumb").src = URL.createObjectURL(file);
  showView("search");
  search();
}

function clearImage(rerun = true) {
  state.image = null;
  $("image-chip").hidden = true;
  if (rerun) search();
}

$("image-chip-clear").addEventListener("click", () => clearImage());
$("upload").addEventListener("change", (e) => useImage(e.target.files[0]));
document.addEventListener("paste", (e) => {
  const file = [...(e.clipboardData || {}).files || []].find((f) => f.type.startsWith("image/"));
  if (file) { e.preventDefault(); useImage(file); }
});
let dragDepth = 0;
document.addEventListener("dragenter", (e) => { e.preventDefault(); dragDepth++; $("drop-overlay").hidden = false; });
document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop-overlay").hidden = true; } });
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  $("drop-overlay").hidden = true;
  const file = [...(e.dataTransfer || {}).files || []][0];
  if (file) useImage(file);
});

// -- the item view ---------------------------------------------------------------------------------

function fact(list, name, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt"); dt.textContent = name;
  const dd = document.createElement("dd"); dd.textContent = value;
  list.append(dt, dd);
}

async function openItem(id) {
  let item;
  try { item = await api(param(`/api/items/${id}`, { neighbours: 12 })); } catch (err) { say(err.message); return; }
  state.item = item;
  $("item-image").src = thumb(id, 512);
  $("item-image").alt = baseName(item.path);
  $("item-link").href = param(`/api/items/${id}/image`, {});
  $("item-name").textContent = baseName(item.path);
  $("item-path").textContent = item.path;
  const facts = $("item-facts");
  facts.replaceChildren();
  fact(facts, "id", item.id);
  fact(facts, "size", item.width ? `${item.width} × ${item.height} px, ${item.format || ""}` : null);
  fact(facts, "bytes", item.size);
  fact(facts, "caption", item.caption);
  fact(facts, "taken", item.taken);
  fact(facts, "camera", item.camera);
  fact(facts, "position", item.lat != null && item.lon != null ? `${item.lat.toFixed(5)}, ${item.lon.toFixed(5)}` : null);
  fact(facts, "modified", item.mtime_ns ? new Date(item.mtime_ns / 1e6).toISOString().slice(0, 19).replace("T", " ") : null);
  fact(facts, "skipped metadata", item.meta_notes);
  fact(facts, "state", item.state);
  fact(facts, "sha256", item.sha256);
  const dups = $("item-duplicates");
  dups.replaceChildren(...(item.duplicates.length ? item.duplicates : [{ path: "none" }]).map((d) => {
    const li = document.createElement("li"); li.className = "path"; li.textContent = d.path; return li;
  }));
  $("item-neighbours").replaceChildren(...item.neighbours.map((hit, i) => card(hit, i, (j) => openItem(item.neighbours[j].id))));
  $("item-view").hidden = false;
  $("item-close").focus();
}

function closeItem() { $("item-view").hidden = true; state.item = null; }
$("item-close").addEventListener("click", closeItem);
$("item-view").addEventListener("click", (e) => { if (e.target === $("item-view")) closeItem(); });
$("item-like").addEventListener("click", () => state.item && moreLike(state.item));

// -- labels: classify the collection, counts per label, browse each ------------------------------------

async function classify(e) {
  e.preventDefault();
  const labels = $("labels").value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  if (!labels.length) { $("progress-text").textContent = ""; return; }
  $("classify").disabled = true;
  $("progress").hidden = false;
  try {
    let run = await api(param("/api/classify", {}), {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ labels, templates: $("templates").value, index: state.index,
                             transductive: $("transductive").checked }),
    });
    state.run = run.id;
    while (true) {
      showRun(run);
      if (run.state !== "running") break;
      await new Promise((r) => setTimeout(r, 250));
      run = await api(param(`/api/classify/${state.run}`, {}));
    }
    if (run.state === "failed") throw new Error(run.error);
    const best = Object.entries(run.counts).sort((a, b) => b[1] - a[1])[0];
    if (best) showLabel(best[0]);
  } catch (err) {
    $("progress-text").textContent = err.message;
  } finally {
    $("classify").disabled = false;
  }
}

function showRun(run) {
  const share = run.total ? run.done / run.total : 1;
  $("progress-bar").style.width = `${Math.round(share * 100)}%`;
  const guard = run.transductive ? (run.transductive.used ? "; transductive: used"
    : `; transductive fell back to plain zero-shot: ${run.transductive.reason}`) : "";
  $("progress-text").textContent = `${run.done} of ${run.total} items` + (run.state === "done" ? ` in ${run.seconds.toFixed(2)} s${guard}` : "");
  const max = Math.max(1, ...Object.values(run.counts));
  const rows = Object.entries(run.counts).sort((a, b) => b[1] - a[1]).map(([label, n]) => {
    const tr = document.createElement("tr");
    tr.className = "label-row";
    tr.dataset.label = label;
    const name = document.createElement("td"); name.textContent = label;
    const count = document.createElement("td"); count.textContent = n;
    const barCell = document.createElement("td");
    const bar = document.createElement("div"); bar.className = "bar"; bar.style.width = `${Math.round(200 * n / max)}px`;
    barCell.appendChild(bar);
    tr.append(name, count, barCell);
    tr.addEventListener("click", () => showLabel(label));
    return tr;
  });
  $("counts").querySelector("tbody").replaceChildren(...rows);
  $("counts").hidden = false;
}

async function showLabel(label, append = false) {
  state.label = label;
  const offset = append ? state.labelOffset + 60 : 0;
  const page = await api(param(`/api/classify/${state.run}/items`, { label, offset, limit: 60 }));
  state.labelOffset = offset;
  for (const tr of document.querySelectorAll("#counts tr.label-row")) tr.classList.toggle("active", tr.dataset.label === label);
  $("label-title").hidden = false;
  $("label-title").textContent = `${label}: ${page.total} items`;
  const cards = page.items.map((it, i) => card(it, i, (j) => openItem(page.items[j].id)));
  if (append) $("label-items").append(...cards); else $("label-items").replaceChildren(...cards);
  $("label-more").hidden = offset + page.items.length >= page.total;
}

$("labels-form").addEventListener("submit", classify);
$("label-more").addEventListener("click", () => showLabel(state.label, true));


// -- audit: review findings, decide, export -------------------------------------------------------------

const AUDIT_TYPES = [["mislabel", "Mislabels"], ["duplicate", "Duplicates"], ["outlier", "Outliers"],
                     ["confusable_labels", "Label pairs"], ["small_class", "Small classes"]];
const auditSay = (text) => { $("audit-message").textContent = text || ""; };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function figureOf(id, caption) {
  const fig = el("figure");
  const img = el("img");
  img.src = thumb(id, 240); img.alt = caption; img.loading = "lazy";
  fig.append(img, el("figcaption", "", caption));
  return fig;
}

function findingCard(f, i) {
  const card = el("div", "finding" + (f.decision ? " decided" : ""));
  card.dataset.id = f.id;
  const thumbs = el("div", "thumbs");
  const about = el("div", "about");
  const line = el("div", "labels");
  if (f.type === "mislabel") {
    thumbs.append(figureOf(f.item_id, baseName(f.path || "")));
    line.append(el("span", "given", f.given_label), document.createTextNode(" → "), el("span", "suggested", f.suggested_label));
    about.append(line, el("div", "muted", `p ${f.given_probability} → ${f.suggested_probability}; score ${f.score}`));
  } else if (f.type === "duplicate") {
    (f.item_ids || []).slice(0, 8).forEach((id, n) => thumbs.append(figureOf(id, `${(f.labels || [])[n] || ""} · ${baseName((f.paths || [])[n] || "")}`)));
    line.textContent = `${f.kind} duplicates, ${(f.item_ids || []).length} items` + (f.label_conflict ? " · labels differ" : "") + (f.split_leak ? " · across splits" : "");
    about.append(line, el("div", "muted", `weakest similarity ${f.score}`));
  } else if (f.type === "outlier") {
    thumbs.append(figureOf(f.item_id, baseName(f.path || "")));
    line.textContent = f.label;
    about.append(line, el("div", "muted", `${f.score} robust deviations from its class`));
  } else {
    (f.item_ids || []).slice(0, 6).forEach((id) => thumbs.append(figureOf(id, "")));
    line.textContent = f.type === "confusable_labels" ? (f.labels || []).join(" ~ ") : `${f.label}: ${f.items} items`;
    about.append(line, el("div", "muted", `score ${f.score}`));
  }
  const path = el("div", "path", f.path || (f.paths || []).join("  "));
  about.append(path);
  if (f.decision) {
    const d = el("span", "decision " + f.decision.action, f.decision.action + (f.decision.label ? ` → ${f.decision.label}` : ""));
    about.prepend(d);
  }
  card.append(thumbs, about);
  card.addEventListener("click", () => auditSelect(i));
  return card;
}

function auditRender() {
  const a = state.audit;
  $("audit-types").replaceChildren(...AUDIT_TYPES.map(([type, name]) => {
    const b = el("button", type === a.type ? "active" : "", `${name} (${a.counts[type] || 0})`);
    b.dataset.type = type;
    b.addEventListener("click", () => loadAudit(type));
    return b;
  }));
  $("audit-list").replaceChildren(...a.findings.map(findingCard));
  const reviewed = a.findings.filter((f) => f.decision).length;
  const total = a.total || 0;
  $("audit-progress-text").textContent = `${reviewed} of ${total} reviewed`;
  $("audit-progress-bar").style.width = total ? `${(100 * reviewed) / total}%` : "0";
  $("audit-export").href = param("/api/audit/export", { drop_duplicates: $("audit-drop-duplicates").checked ? "true" : "" });
  $("audit-labels").replaceChildren(...a.labels.map((l) => { const o = el("option"); o.value = l; return o; }));
  auditSelect(Math.min(a.current, Math.max(0, a.findings.length - 1)), false);
}

function auditSelect(i, scroll = true) {
  const a = state.audit;
  if (!a.findings.length) return;
  a.current = Math.max(0, Math.min(i, a.findings.length - 1));
  const cards = $("audit-list").children;
  for (let n = 0; n < cards.length; n++) cards[n].classList.toggle("current", n === a.current);
  if (scroll && cards[a.current]) cards[a.current].scrollIntoView({ block: "nearest" });
}

async function loadAudit(type = state.audit.type) {
  const a = state.audit;
  a.type = type; a.current = type === a.lastType ? a.current : 0; a.lastType = type;
  try {
    const body = await api(param("/api/audit", { type, limit: 1000 }));
    a.findings = body.findings; a.total = body.total; a.counts = body.counts || {};
    a.labels = body.labels || []; a.allowed = body.decisions_allowed; a.loaded = true;
    auditSay(a.allowed ? "" : "Read-only: start `indexer serve --allow-decisions` to record decisions here.");
    if (body.total > body.findings.length) auditSay(`Showing the first ${body.findings.length} of ${body.total}.`);
    auditRender();
    loadPlots();
  } catch (err) {
    a.findings = []; a.total = 0; auditRender();
    auditSay(err.message);
  }
}

function loadPlots() {
  const names = ["nearest", "confidence", "margins", "agreement", "confusion"];
  $("audit-plot-images").replaceChildren(...names.map((name) => {
    const img = el("img"); img.alt = `${name} plot`; img.src = param(`/api/audit/plots/${name}.svg`, {});
    img.addEventListener("error", () => img.remove());
    return img;
  }));
}

async function decide(action, label) {
  const a = state.audit;
  const f = a.findings[a.current];
  if (!f) return;
  if (!a.allowed) { auditSay("Read-only: start `indexer serve --allow-decisions` to record decisions here."); return; }
  try {
    const made = await api(param("/api/audit/decisions", {}), {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: f.id, action, label: label || null }) });
    f.decision = made.action ? { action: made.action, label: made.label } : null;
    auditSay("");
    const next = a.findings.findIndex((g, n) => n > a.current && !g.decision);
    if (action !== "undo") a.current = next >= 0 ? next : a.current;
    auditRender();
    auditSelect(a.current);
  } catch (err) {
    auditSay(err.message);
  }
}

function openRelabel() {
  if (!state.audit.findings.length) return;
  $("audit-relabel").hidden = false;
  const input = $("audit-relabel-input");
  const f = state.audit.findings[state.audit.current];
  input.value = (f && f.suggested_label) || "";
  input.focus(); input.select();
}
function closeRelabel() { $("audit-relabel").hidden = true; $("audit-relabel-input").blur(); }
function confirmRelabel() {
  const label = $("audit-relabel-input").value.trim();
  closeRelabel();
  if (label) decide("relabel", label);
}
$("audit-relabel-ok").addEventListener("click", confirmRelabel);
$("audit-relabel-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter") { e.preventDefault(); confirmRelabel(); }
  if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); closeRelabel(); }
});
$("audit-drop-duplicates").addEventListener("change", auditRender);

function auditKey(e) {
  const keys = { a: () => decide("accept"), r: () => decide("reject"), d: () => decide("drop"), u: () => decide("undo"),
                 l: openRelabel, j: () => auditSelect(state.audit.current + 1), k: () => auditSelect(state.audit.current - 1),
                 ArrowDown: () => auditSelect(state.audit.current + 1), ArrowUp: () => auditSelect(state.audit.current - 1) };
  const act = keys[e.key];
  if (!act || e.ctrlKey || e.metaKey || e.altKey) return false;
  e.preventDefault();
  act();
  return true;
}

// -- views, keys, start -------------------------------------------------------------------------------

function showView(view) {
  state.view = view;
  for (const v of ["search", "labels", "audit"]) {
    $(`view-${v}`).hidden = v !== view;
    $(`tab-${v}`).classList.toggle("active", v === view);
  }
  if (view === "audit" && !state.audit.loaded) loadAudit();
}
for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));

function columns() {
  const cards = $("results").children;
  if (cards.length < 2) return 1;
  const top = cards[0].offsetTop;
  let n = 0;
  while (n < cards.length && cards[n].offsetTop === top) n++;
  return Math.max(1, n);
}

document.addEventListener("keydown", (e) => {
  const typingIn = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  if (e.key === "Escape") {
    if (!$("item-view").hidden) { closeItem(); return; }
    if (typingIn) document.activeElement.blur();
    return;
  }
  if (!$("item-view").hidden) {
    if (e.key === "m" && state.item) moreLike(state.item);
    if ((e.key === "ArrowRight" || e.key === "ArrowLeft") && state.hits.length && state.selected >= 0) {
      select(state.selected + (e.key === "ArrowRight" ? 1 : -1));
      openItem(state.hits[state.selected].id);
    }
    return;
  }
  if (e.key === "/" && !typingIn) { e.preventDefault(); showView("search"); $("q").focus(); return; }
  if (state.view === "audit") { if (!typingIn) auditKey(e); return; }
  if (state.view !== "search" || !state.hits.length) return;
  if (typingIn && e.key === "ArrowDown") { document.activeElement.blur(); select(0); e.preventDefault(); return; }
  if (typingIn) return;
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() }[e.key];
  if (step) {
    e.preventDefault();
    if (state.selected + step < 0 && e.key === "ArrowUp") { $("q").focus(); return; }
    select(state.selected < 0 ? 0 : state.selected + step);
  } else if (e.key === "Enter" && state.selected >= 0) {
    openItem(state.hits[state.selected].id);
  } else if (e.key === "m" && state.selected >= 0) {
    moreLike(state.hits[state.selected]);
  }
});

async function start() {
  try {
    const indexes = await api("/api/indexes");
    const select = $("index-select");
    select.replaceChildren(...indexes.map((ix) => {
      const o = document.createElement("option"); o.value = ix.name; o.textContent = `${ix.name} (${ix.embedded} items)`; return o;
    }));
    select.hidden = indexes.length < 2;
    state.index = indexes.length ? indexes[0].name : null;
    select.addEventListener("change", () => {
      state.index = select.value; state.audit.loaded = false;
      if (state.view === "audit") loadAudit(); else search();
    });
    if (indexes.length) $("status").textContent = `${indexes[0].embedded} items · ${indexes[0].model || "no model yet"}`;
  } catch (err) {
    say(err.message);
  }
}
start();
