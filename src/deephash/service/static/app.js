// deephash page: plain JavaScript, no build step. Talks to the same server's /api.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { stats: null, last: null, key: localStorage.getItem("deephash-key") || "", seq: 0 };

function fmtBytes(n) {
  return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : n >= 1024 ? Math.round(n / 1024) + " KB" : n + " bytes";
}

// An image of the index. The key goes only in a header, never in a URL (URLs are logged): when
// reads are keyed, the image is fetched with the header and shown from a blob: URL.
function showImage(img, url) {
  if (!(state.key && state.stats && state.stats.auth.read_key_required)) { img.src = url; return; }
  fetch(url, { headers: { "X-API-Key": state.key } })
    .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.blob(); })
    .then((b) => {
      img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
      img.src = URL.createObjectURL(b);
    })
    .catch(() => { img.alt = "(thumbnail unavailable) " + img.alt; });
}

async function api(url, opts = {}) {
  const headers = Object.assign({}, opts.headers || {}, state.key ? { "X-API-Key": state.key } : {});
  let r;
  try {
    r = await fetch(url, Object.assign({}, opts, { headers }));
  } catch (e) {
    throw new Error("the server did not answer (" + e.message + ")");
  }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const err = new Error((body && body.detail) || "HTTP " + r.status + " " + r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

function say(text, kind = "error") {
  const m = $("#message");
  if (!text) { m.hidden = true; m.textContent = ""; return; }
  m.textContent = text;
  m.className = kind === "info" ? "info" : "";
  m.hidden = false;
}

function queryString() {
  const p = new URLSearchParams({ k: $("#k").value, rerank: $("#rerank").checked ? "true" : "false" });
  if ($("#label").value) p.set("label", $("#label").value);
  if ($("#radius").value !== "") p.set("radius", $("#radius").value);
  return p.toString();
}

function setQuery(src, caption) {
  const img = $("#query-img");
  if (src.startsWith("blob:")) img.src = src; else showImage(img, src);
  img.hidden = false;
  $("#query-caption").textContent = caption;
}

function hitButton(h, subtitle) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "hit";
  b.dataset.id = h.id;
  b.title = (h.path || "") + " — click to search with this image";
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = (h.label || "image") + " #" + h.id;
  showImage(img, h.thumb_url);
  const meta = document.createElement("span");
  meta.className = "meta";
  const lab = document.createElement("span");
  lab.className = "label";
  lab.textContent = Array.isArray(h.label) ? h.label.join(", ") : (h.label == null ? "—" : String(h.label));
  const dist = document.createElement("span");
  dist.className = "dist";
  dist.textContent = subtitle;
  meta.append(lab, dist);
  b.append(img, meta);
  b.addEventListener("click", () => searchById(h.id, h.label));
  return b;
}

function render(ans) {
  const grid = $("#results");
  grid.replaceChildren();
  ans.results.forEach((h) => {
    const d = h.hamming != null ? "d=" + h.hamming : "d=" + h.distance.toPrecision(3);  // PQ / DPQ: asymmetric
    const sub = h.feature_distance != null ? d + " · " + h.feature_distance.toFixed(1) : d;
    grid.append(hitButton(h, sub));
  });
  const t = ans.timings_ms;
  const parts = ["decode", "backbone", "hash", "search", "rerank"].filter((s) => t[s] != null).map((s) => s + " " + t[s].toFixed(1));
  $("#timings").textContent = "timings (ms): " + parts.join(", ") + " — total " + t.total.toFixed(1);
  const pool = ans.rerank_pool ? ", re-ranked a pool of " + ans.rerank_pool.size + " within radius " + ans.rerank_pool.radius : "";
  $("#results-title").innerHTML = "";
  $("#results-title").append(ans.count + " results ", Object.assign(document.createElement("span"),
    { className: "muted", textContent: "(d = Hamming distance" + pool + "; click one to search with it)" }));
  if (!ans.count) say("no image matched: widen the radius or clear the label filter", "info");
}

async function run(fetcher) {
  const seq = ++state.seq;
  const grid = $("#results");
  grid.setAttribute("aria-busy", "true");
  try {
    const ans = await fetcher();
    if (seq !== state.seq) return; // a newer query has started
    say("");
    render(ans);
  } catch (e) {
    if (seq !== state.seq) return;
    say(e.message);
    if (e.status === 401 || e.status === 403) $("#key-box").hidden = false;
  } finally {
    if (seq === state.seq) grid.removeAttribute("aria-busy");
  }
}

function searchFile(file) {
  if (!file) return;
  const limit = state.stats ? state.stats.limits.max_upload_bytes : Infinity;
  if (file.type && !file.type.startsWith("image/")) {
    say(file.name + " is not an image (its type is " + file.type + "); choose a JPEG, PNG, GIF, BMP, TIFF or WebP file");
    return;
  }
  if (file.size === 0) { say(file.name + " is empty (0 bytes)"); return; }
  if (file.size > limit) { say(file.name + " is " + fmtBytes(file.size) + ", more than the limit of " + fmtBytes(limit)); return; }
  state.last = { file };
  setQuery(URL.createObjectURL(file), file.name + " (uploaded)");
  const body = new FormData();
  body.append("file", file);
  run(() => api("/api/search?" + queryString(), { method: "POST", body }));
}

function searchById(id, label) {
  state.last = { id };
  setQuery("/api/images/" + id + "/thumb?size=256", "indexed image #" + id + (label ? " (" + label + ")" : ""));
  run(() => api("/api/search/" + id + "?" + queryString()));
}

function again() {
  if (!state.last) return;
  if (state.last.file) searchFile(state.last.file); else searchById(state.last.id);
}

async function showExamples() {
  const total = state.stats.count;
  const n = Math.min(24, total);
  const step = Math.max(1, Math.floor(total / n));
  const offset = Math.floor(Math.random() * step);
  const list = await api("/api/images?offset=" + offset + "&limit=" + n + "&step=" + step);
  const grid = $("#results");
  grid.replaceChildren();
  list.items.forEach((h) => grid.append(hitButton(h, "#" + h.id)));
}

async function start() {
  try {
    const s = await api("/api/stats");
    state.stats = s;
    $("#stats").textContent = s.count + " images · " + s.bits + " bits · " + s.method + " on " + s.backbone.name +
      (s.has_features ? " · re-rank available" : "");
    $("#limit-note").textContent = "up to " + fmtBytes(s.limits.max_upload_bytes);
    $("#k").max = String(Math.min(200, s.limits.max_k));
    $("#radius").max = String(s.bits);
    $("#rerank").disabled = !s.has_features;
    for (const name of s.class_names) $("#label").append(new Option(name, name));
    $("#label").disabled = !s.has_labels;
    if (s.auth.read_key_required) $("#key-box").hidden = false;
    await showExamples();
  } catch (e) {
    say("cannot load the index statistics: " + e.message);
    if (e.status === 401 || e.status === 403) $("#key-box").hidden = false;
  }
}

function wire() {
  const drop = $("#drop");
  $("#file").addEventListener("change", (e) => { searchFile(e.target.files[0]); e.target.value = ""; });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#file").click(); } });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer.files[0];
    if (!f) { say("nothing to search: drop an image file"); return; }
    searchFile(f);
  });
  $("#k").addEventListener("input", () => { $("#k-out").textContent = $("#k").value; });
  $("#k").addEventListener("change", again);
  $("#rerank").addEventListener("change", again);
  $("#label").addEventListener("change", again);
  $("#radius").addEventListener("change", again);
  $("#key").value = state.key;
  $("#key").addEventListener("change", () => {
    state.key = $("#key").value.trim();
    localStorage.setItem("deephash-key", state.key);
    start();
  });
}

wire();
start();
