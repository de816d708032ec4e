/* Zebra web page: plain JavaScript, no build step, no third-party code. Every action is a call of the
   documented JSON API (/docs). Text from the server is always inserted with textContent, never as HTML. */
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  csrf: null,
  user: null,
  sessionId: null,
  studies: { current: null, prior: null },
  showing: "current",
  n: 0,
  wc: null,
  ww: null,
  overlay: null,
  busy: false,
  /* Bumped when the page switches session: late results of the old one are dropped. */
  generation: 0,
  creatingSession: null,
  /* Uploads in flight for this session; each resolves to {ok, study} or {ok: false, error}, never rejects. */
  uploads: new Set(),
};
const PRESETS = { brain: [40, 80], soft: [50, 400], lung: [-600, 1500], bone: [400, 1800] };

function readCookie(name) {
  const hit = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : null;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.hint = body && body.hint;
  }
}

async function api(method, path, body, { raw = false } = {}) {
  const headers = {};
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = state.csrf || (readCookie("__Host-zebra_csrf") || readCookie("zebra_csrf")) || "";
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (!resp.ok) {
    let data = null;
    try { data = await resp.json(); } catch (_) { /* not JSON */ }
    if (resp.status === 401 && path !== "/api/auth/login") showLogin();
    throw new ApiError(resp.status, data);
  }
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}

function errorText(err) {
  return err.hint ? `${err.message} ${err.hint}` : err.message;
}

/* ---------- sign in / out ---------- */

function showLogin() {
  state.user = null;
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("user-name").hidden = true;
  $("signout").hidden = true;
  $("account-button").hidden = true;
  if ($("account-dialog").open) $("account-dialog").close();
  $("login-username").focus();
}

async function showApp(user) {
  state.user = user;
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("user-name").textContent = user.username;
  $("user-name").hidden = false;
  $("signout").hidden = false;
  $("account-button").hidden = false;
  pollKnowledgeBase();
  refreshPacs();
  await refreshSessions();
}

/* ---------- knowledge base build (issue 16): progress until it is ready ---------- */

let kbTimer = null;

async function pollKnowledgeBase() {
  clearTimeout(kbTimer);
  if (!state.user) return;
  let kb = null;
  try { kb = await api("GET", "/api/kb"); } catch (_) { kb = null; }
  const line = $("kb-status");
  if (kb && !kb.ready) {
    line.textContent = kb.message + " Image findings work now; a differential needs the knowledge base.";
    line.hidden = false;
    kbTimer = setTimeout(pollKnowledgeBase, 5000);
  } else {
    line.hidden = true;
    if (!kb) kbTimer = setTimeout(pollKnowledgeBase, 15000);
  }
}

async function onLogin(ev) {
  ev.preventDefault();
  const err = $("login-error");
  err.hidden = true;
  $("login-submit").disabled = true;
  try {
    const data = await api("POST", "/api/auth/login", {
      username: $("login-username").value.trim(),
      password: $("login-password").value,
    });
    state.csrf = data.csrf_token;
    $("login-password").value = "";
    await showApp(data.user);
  } catch (e) {
    err.textContent = errorText(e);
    err.hidden = false;
  } finally {
    $("login-submit").disabled = false;
  }
}

async function onSignOut() {
  clearTimeout(kbTimer);
  $("kb-status").hidden = true;
  try { await api("POST", "/api/auth/logout"); } catch (_) { /* signed out anyway */ }
  state.csrf = null;
  resetSession();
  showLogin();
}

/* ---------- sessions ---------- */

function resetSession() {
  state.generation += 1;
  state.creatingSession = null;
  state.uploads = new Set();
  setAskStatus("");
  state.sessionId = null;
  state.studies = { current: null, prior: null };
  state.showing = "current";
  state.overlay = null;
  $("chat-log").replaceChildren();
  $("show-prior").disabled = true;
  setStudyButtons();
  loadViewer();
  for (const li of document.querySelectorAll("#session-list li")) li.classList.remove("active");
}

async function refreshSessions() {
  const list = $("session-list");
  let sessions = [];
  try { sessions = await api("GET", "/api/sessions"); } catch (e) { return; }
  list.replaceChildren();
  for (const s of sessions) {
    const li = document.createElement("li");
    li.dataset.testid = "session-item";
    li.setAttribute("data-testid", "session-item");
    li.dataset.id = s.id;
    li.tabIndex = 0;
    li.setAttribute("role", "button");
    li.textContent = s.title || "Untitled session";
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = `${new Date(s.updated_at).toLocaleString()} · ${s.n_messages} messages`;
    li.append(when);
    if (s.id === state.sessionId) li.classList.add("active");
    li.addEventListener("click", () => openSession(s.id));
    li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openSession(s.id); });
    list.append(li);
  }
  if (!sessions.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No sessions yet: upload a study to start.";
    list.append(li);
  }
}

/* The session's id, creating the session once (an upload and a question may both ask at the same time). */
function ensureSession() {
  if (state.sessionId) return Promise.resolve(state.sessionId);
  if (!state.creatingSession) {
    const gen = state.generation;
    const creating = api("POST", "/api/sessions", {
      study_id: state.studies.current ? state.studies.current.id : null,
      prior_study_id: state.studies.prior ? state.studies.prior.id : null,
    }).then((s) => {
      if (gen === state.generation) state.sessionId = s.id;
      return s.id;
    }).finally(() => {
      if (state.creatingSession === creating) state.creatingSession = null;
    });
    state.creatingSession = creating;
  }
  return state.creatingSession;
}

async function openSession(id) {
  try {
    const s = await api("GET", `/api/sessions/${encodeURIComponent(id)}`);
    resetSession();
    state.sessionId = s.id;
    const log = $("chat-log");
    for (const m of s.messages) {
      if (m.role === "user") log.append(userBubble(m.content));
      else if (m.role === "assistant") log.append(renderAnswer(m.payload || { text: m.content }));
    }
    state.studies.current = s.study_id ? await api("GET", `/api/studies/${s.study_id}`) : null;
    state.studies.prior = s.prior_study_id ? await api("GET", `/api/studies/${s.prior_study_id}`) : null;
    setStudyButtons();
    loadViewer();
    for (const li of document.querySelectorAll("#session-list li")) {
      li.classList.toggle("active", li.dataset.id === id);
    }
    log.scrollTop = log.scrollHeight;
  } catch (e) {
    setStatus(errorText(e), "bad");
  }
}

/* ---------- uploads ---------- */

function setStatus(text, kind = "") {
  const el = $("upload-status");
  el.textContent = text;
  el.className = "status " + kind;
}

/* Starts an upload; a question asked meanwhile waits for it (see onAsk). */
function uploadFiles(files, role) {
  if (!files || !files.length) return;
  const uploads = state.uploads;
  const task = runUpload(Array.from(files), role);
  uploads.add(task);
  task.then(() => uploads.delete(task));
}

async function runUpload(files, role) {
  const gen = state.generation;
  setStatus(`Uploading and de-identifying ${files.length} file(s)…`);
  try {
    // The session exists before the upload starts, so the server links the study to it and holds back
    // questions to it until the study is stored (session_id as a query parameter: known from the first byte).
    const created = !state.sessionId;
    const sid = await ensureSession();
    if (created) refreshSessions();
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    const query = new URLSearchParams({ role, session_id: sid });
    const study = await api("POST", `/api/studies?${query}`, form);
    if (gen !== state.generation) return { ok: false, stale: true };
    showLoadedStudy(study, role);
    return { ok: true, study };
  } catch (e) {
    if (gen !== state.generation) return { ok: false, stale: true };
    setStatus(`The upload failed: ${errorText(e)} The ${role === "prior" ? "prior" : "study"} is not loaded.`,
      "bad");
    return { ok: false, error: e };
  }
}

/* A study the server stored (uploaded or opened from the PACS) goes to the viewer as `role`. */
function showLoadedStudy(study, role, via = "") {
  state.studies[role] = study;
  const warn = study.warnings && study.warnings.length ? ` (${study.warnings.length} warning(s))` : "";
  setStatus(`${role === "prior" ? "Prior" : "Study"} loaded${via}: ${study.modality || study.source_kind}, ` +
    `${study.n_images} image(s)${warn}.`, "ok");
  state.showing = role;
  setStudyButtons();
  loadViewer();
  refreshSessions();
}

/* ---------- open from PACS (the server fetches from the administrator's DICOMweb server) ---------- */

async function refreshPacs() {
  let configured = false;
  try { configured = (await api("GET", "/api/pacs")).configured === true; } catch (_) { configured = false; }
  $("pacs-form").hidden = !configured;
}

function onPacsOpen(ev) {
  ev.preventDefault();
  const kind = $("pacs-kind").value === "study_uid" ? "study_uid" : "accession";
  const role = $("pacs-role").value === "prior" ? "prior" : "current";
  const value = $("pacs-value").value.trim();
  if (!value) return;
  if (kind === "study_uid" && !/^[0-9]+(\.[0-9]+)+$/.test(value)) {
    setStatus("A Study UID is digits and dots, e.g. 1.2.840.1.", "bad");
    return;
  }
  if (kind === "accession" && /[*?\\,=&]/.test(value)) {
    setStatus("An accession number is matched exactly: no wildcards (* ?) or , \\ = &.", "bad");
    return;
  }
  // Registered like an upload: a question asked meanwhile waits for the study.
  const uploads = state.uploads;
  const task = runPacsOpen(kind, value, role);
  uploads.add(task);
  task.then(() => uploads.delete(task));
}

async function runPacsOpen(kind, value, role) {
  const gen = state.generation;
  const button = $("pacs-open");
  button.disabled = true;
  setStatus("Fetching the study from the PACS and de-identifying it…");
  try {
    const created = !state.sessionId;
    const sid = await ensureSession();
    if (created) refreshSessions();
    const study = await api("POST", "/api/studies/pacs", { [kind]: value, role, session_id: sid });
    if (gen !== state.generation) return { ok: false, stale: true };
    $("pacs-value").value = "";
    showLoadedStudy(study, role, " from the PACS");
    return { ok: true, study };
  } catch (e) {
    if (gen !== state.generation) return { ok: false, stale: true };
    setStatus(`Opening from the PACS failed: ${errorText(e)} The ${role === "prior" ? "prior" : "study"} ` +
      "is not loaded.", "bad");
    return { ok: false, error: e };
  } finally {
    button.disabled = false;
  }
}

/* Waits until no upload of this session is in flight; the failures among them (none: []). */
async function settleUploads() {
  const failed = [];
  while (state.uploads.size) {
    for (const r of await Promise.all([...state.uploads])) if (!r.ok && !r.stale) failed.push(r.error);
  }
  return failed;
}

function wireDrop(labelTestId, input, role) {
  const zone = document.querySelector(`[data-testid="${labelTestId}"]`);
  input.addEventListener("change", () => { uploadFiles(input.files, role); input.value = ""; });
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("dragover"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragover"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("dragover");
    uploadFiles(ev.dataTransfer.files, role);
  });
}

/* ---------- viewer ---------- */

const viewer = { base: null, heat: null, token: 0, pending: false, again: false };

function study() { return state.studies[state.showing]; }

function setStudyButtons() {
  $("delete-shown-study").hidden = !study();
  $("show-prior").disabled = !state.studies.prior;
  $("show-current").classList.toggle("active", state.showing === "current");
  $("show-prior").classList.toggle("active", state.showing === "prior");
}

function defaultWindow(img) {
  if (img && img.window) return [img.window[0], img.window[1]];
  if (img && img.pixel_range) {
    const [lo, hi] = img.pixel_range;
    return [(lo + hi) / 2, Math.max(1, hi - lo)];
  }
  return [127.5, 256];
}

function loadViewer() {
  const s = study();
  const slider = $("slice-slider");
  if (!s || !s.n_images) {
    viewer.base = null;
    $("viewer-title").textContent = "No study loaded";
    $("viewer-empty").hidden = false;
    slider.max = 0;
    $("slice-label").textContent = "0 / 0";
    draw();
    return;
  }
  $("viewer-empty").hidden = true;
  $("viewer-title").textContent =
    `${state.showing === "prior" ? "Prior" : "Current"}: ${s.modality || s.source_kind} · ${s.n_images} image(s)`;
  slider.max = String(s.n_images - 1);
  state.n = Math.min(state.n, s.n_images - 1);
  if (state.showing === "current" && s.n_images > 1 && state.n === 0) state.n = Math.floor(s.n_images / 2);
  slider.value = String(state.n);
  resetWindow();
  showImage();
}

function resetWindow() {
  const s = study();
  const img = s && s.images[state.n];
  [state.wc, state.ww] = defaultWindow(img);
  state.windowChanged = false;
  const range = img && img.pixel_range ? img.pixel_range : [0, 255];
  const span = Math.max(1, range[1] - range[0]);
  $("wc-slider").min = String(Math.floor(range[0] - span * 0.25));
  $("wc-slider").max = String(Math.ceil(range[1] + span * 0.25));
  $("ww-slider").min = "1";
  $("ww-slider").max = String(Math.ceil(span * 2));
  syncWindowInputs();
}

function syncWindowInputs() {
  $("wc-slider").value = String(Math.round(state.wc));
  $("ww-slider").value = String(Math.round(state.ww));
  $("wc-value").textContent = String(Math.round(state.wc));
  $("ww-value").textContent = String(Math.round(state.ww));
}

function imageUrl() {
  const s = study();
  let url = `/api/studies/${s.id}/images/${state.n}.png`;
  if (state.windowChanged) url += `?wc=${encodeURIComponent(state.wc.toFixed(1))}&ww=${encodeURIComponent(state.ww.toFixed(1))}`;
  return url;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("image failed to load"));
    img.src = url;
  });
}

/* One fetch in flight at a time; the latest request wins (dragging fires many). */
async function showImage() {
  const s = study();
  if (!s) return;
  if (viewer.pending) { viewer.again = true; return; }
  viewer.pending = true;
  const token = ++viewer.token;
  try {
    $("slice-label").textContent = `${state.n + 1} / ${s.n_images}`;
    viewer.base = await loadImage(imageUrl());
    await loadOverlay(token);
    draw();
  } catch (e) {
    setStatus("Could not load the image.", "bad");
  } finally {
    viewer.pending = false;
    if (viewer.again) { viewer.again = false; showImage(); }
  }
}

async function loadOverlay(token) {
  const s = study();
  state.overlay = null;
  viewer.heat = null;
  $("overlay-status").textContent = "";
  try {
    const ov = await api("GET", `/api/studies/${s.id}/images/${state.n}/overlays`);
    if (token !== viewer.token) return;
    if (!ov.available) {
      $("overlay-status").textContent = "No model overlay for this image yet: ask a question.";
      return;
    }
    state.overlay = ov;
    if (ov.heatmap_url) viewer.heat = await loadImage(ov.heatmap_url + `?t=${Date.now()}`);
    const score = typeof ov.anomaly_score === "number" ? ` · anomaly ${ov.anomaly_score.toFixed(2)}` : "";
    $("overlay-status").textContent = `Model overlay available${score}`;
  } catch (e) {
    $("overlay-status").textContent = "";
  }
}

function draw() {
  const canvas = $("viewer-canvas");
  const rect = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(rect.width * dpr));
  canvas.height = Math.max(1, Math.round(rect.height * dpr));
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const img = viewer.base;
  if (!img) return;
  const scale = Math.min(canvas.width / img.naturalWidth, canvas.height / img.naturalHeight);
  const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
  const x = (canvas.width - w) / 2, y = (canvas.height - h) / 2;
  ctx.imageSmoothingEnabled = true;
  const ov = state.overlay;
  const heatOn = $("toggle-heatmap").checked && viewer.heat;
  if (heatOn && ov && ov.heatmap_kind === "blend") {
    ctx.drawImage(viewer.heat, x, y, w, h);
  } else {
    ctx.drawImage(img, x, y, w, h);
    if (heatOn) {
      ctx.globalAlpha = 0.85;
      ctx.drawImage(viewer.heat, x, y, w, h);
      ctx.globalAlpha = 1;
    }
  }
  if ($("toggle-boxes").checked && ov && ov.boxes) {
    ctx.lineWidth = Math.max(2, 2 * dpr);
    ctx.font = `${12 * dpr}px system-ui, sans-serif`;
    const colours = ["#00ff66", "#ffee00", "#00c8ff", "#ff8800", "#ff00ff"];
    ov.boxes.forEach((b, i) => {
      ctx.strokeStyle = ctx.fillStyle = colours[i % colours.length];
      ctx.strokeRect(x + b.x1 * scale, y + b.y1 * scale, (b.x2 - b.x1) * scale, (b.y2 - b.y1) * scale);
      const label = `${b.label || "finding"} ${typeof b.score === "number" ? b.score.toFixed(2) : ""}`;
      ctx.fillText(label, x + b.x1 * scale + 2, Math.max(12 * dpr, y + b.y1 * scale - 4));
    });
  }
}

function setSlice(n) {
  const s = study();
  if (!s) return;
  const next = Math.max(0, Math.min(s.n_images - 1, n));
  if (next === state.n) return;
  state.n = next;
  $("slice-slider").value = String(next);
  showImage();
}

function setWindow(wc, ww) {
  state.wc = wc;
  state.ww = Math.max(1, ww);
  state.windowChanged = true;
  syncWindowInputs();
  showImage();
}

function wireViewer() {
  const canvas = $("viewer-canvas");
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    if (!study()) return;
    drag = { x: ev.clientX, y: ev.clientY, wc: state.wc, ww: state.ww };
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const s = study();
    const img = s.images[state.n];
    const range = img && img.pixel_range ? img.pixel_range[1] - img.pixel_range[0] : 255;
    const k = Math.max(range, 1) / 400;  // a 400-pixel drag spans the image's value range
    setWindow(drag.wc + (ev.clientY - drag.y) * k, drag.ww + (ev.clientX - drag.x) * k);
  });
  const end = () => { drag = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("wheel", (ev) => {
    if (!study()) return;
    ev.preventDefault();
    setSlice(state.n + (ev.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  canvas.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowUp" || ev.key === "ArrowRight") { setSlice(state.n + 1); ev.preventDefault(); }
    if (ev.key === "ArrowDown" || ev.key === "ArrowLeft") { setSlice(state.n - 1); ev.preventDefault(); }
  });
  $("slice-slider").addEventListener("input", (ev) => setSlice(Number(ev.target.value)));
  $("wc-slider").addEventListener("input", (ev) => setWindow(Number(ev.target.value), state.ww));
  $("ww-slider").addEventListener("input", (ev) => setWindow(state.wc, Number(ev.target.value)));
  for (const b of document.querySelectorAll("[data-preset]")) {
    b.addEventListener("click", () => {
      if (!study()) return;
      const p = b.dataset.preset;
      if (p === "default") { resetWindow(); showImage(); } else setWindow(...PRESETS[p]);
    });
  }
  $("toggle-heatmap").addEventListener("change", draw);
  $("toggle-boxes").addEventListener("change", draw);
  $("show-current").addEventListener("click", () => { state.showing = "current"; setStudyButtons(); loadViewer(); });
  $("show-prior").addEventListener("click", () => { state.showing = "prior"; setStudyButtons(); loadViewer(); });
  window.addEventListener("resize", draw);
}

/* ---------- chat ---------- */

function userBubble(text) {
  const el = document.createElement("div");
  el.className = "msg user";
  el.setAttribute("data-testid", "question");
  el.textContent = text;
  return el;
}

function citeList(ids) {
  const frag = document.createDocumentFragment();
  for (const id of ids || []) {
    const s = document.createElement("span");
    s.className = "cite";
    s.textContent = `[${id}]`;
    frag.append(s);
  }
  return frag;
}

function fillAnswer(node, a) {
  const text = node.querySelector(".answer-text");
  text.classList.remove("streaming");
  text.textContent = a.text || "";
  const abst = node.querySelector(".abstention");
  if (a.abstained) {
    abst.textContent = `The assistant abstained: ${a.abstain_reason || "not confident enough to name a diagnosis."}`;
    abst.hidden = false;
  }
  if (a.backoff && a.backoff.name) {
    abst.textContent += ` Safer category: ${a.backoff.name}.`;
  }
  const change = node.querySelector(".change");
  if (a.change) { change.textContent = `Change since prior: ${a.change}`; change.hidden = false; }
  const table = node.querySelector(".differential");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const d of a.differential || []) {
    const tr = document.createElement("tr");
    tr.setAttribute("data-testid", "differential-row");
    const name = document.createElement("td");
    name.textContent = d.diagnosis;
    if (d.icd10) {
      const code = document.createElement("span");
      code.className = "muted small";
      code.textContent = ` ${d.icd10}`;
      name.append(code);
    }
    if (d.rationale) { name.title = d.rationale; }
    const prob = document.createElement("td");
    prob.className = "prob";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(60 * Math.max(0, Math.min(1, d.probability)))}px`;
    prob.append(bar, document.createTextNode(`${(100 * d.probability).toFixed(0)}%`));
    const cites = document.createElement("td");
    cites.append(citeList(d.citations));
    tr.append(name, prob, cites);
    body.append(tr);
  }
  table.hidden = !(a.differential && a.differential.length);
  const notes = node.querySelector(".notes");
  notes.textContent = (a.notes || []).join(" ");
  fillEvidence(node, a.evidence || { documents: [], images: [], model: [] });
}

function fillEvidence(node, ev) {
  const panel = node.querySelector(".evidence");
  const toggle = node.querySelector(".evidence-toggle");
  const docs = panel.querySelector(".docs");
  docs.replaceChildren();
  for (const c of ev.documents || []) docs.append(evidenceItem(c));
  const thumbs = panel.querySelector(".thumbs");
  thumbs.replaceChildren();
  for (const c of ev.images || []) {
    const fig = document.createElement("figure");
    fig.setAttribute("data-testid", "similar-image");
    if (c.thumbnail_url) {
      const img = document.createElement("img");
      img.src = c.thumbnail_url;
      img.alt = `Similar image ${c.id}: ${c.title || ""}`;
      img.setAttribute("data-testid", "similar-thumb");
      fig.append(img);
    }
    const cap = document.createElement("figcaption");
    cap.textContent = `[${c.id}] ${c.diagnosis || c.title || ""}`;
    fig.append(cap);
    thumbs.append(fig);
  }
  const model = panel.querySelector(".model");
  model.replaceChildren();
  for (const c of ev.model || []) model.append(evidenceItem(c));
  panel.querySelector(".images-head").hidden = !(ev.images || []).length;
  panel.querySelector(".model-head").hidden = !(ev.model || []).length;
  const total = (ev.documents || []).length + (ev.images || []).length + (ev.model || []).length;
  toggle.hidden = total === 0;
  toggle.textContent = `Show evidence (${total})`;
  toggle.onclick = () => {
    panel.hidden = !panel.hidden;
    toggle.setAttribute("aria-expanded", String(!panel.hidden));
    toggle.textContent = `${panel.hidden ? "Show" : "Hide"} evidence (${total})`;
  };
}

function evidenceItem(c) {
  const li = document.createElement("li");
  li.setAttribute("data-testid", "citation");
  const src = document.createElement("span");
  src.className = "src";
  src.textContent = `[${c.id}] ${c.source || ""}`;
  li.append(src);
  if (c.url) {
    const a = document.createElement("a");
    a.href = c.url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = c.title || c.id;
    li.append(a);
  } else {
    li.append(document.createTextNode(c.title || c.id));
  }
  if (c.quote) {
    const q = document.createElement("span");
    q.className = "quote";
    q.textContent = `“${c.quote}”`;
    li.append(q);
  }
  return li;
}

function renderAnswer(a) {
  const node = $("answer-template").content.firstElementChild.cloneNode(true);
  fillAnswer(node, a);
  return node;
}

/* Reads a text/event-stream body: calls onEvent(name, data) per event. */
async function readSSE(resp, onEvent) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function setAskStatus(text) {
  $("ask-status").textContent = text;
}

const WAITING_TEXT = "Waiting for the image to be de-identified…";
/* Seconds the page keeps retrying a question the server holds back for an upload (409). */
const NOT_READY_RETRY_S = 180;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/* POSTs the question; while the server says the session's image is still being prepared, waits and retries. */
async function postQuestion(sid, body, gen) {
  const until = Date.now() + NOT_READY_RETRY_S * 1000;
  for (;;) {
    try {
      return await api("POST", `/api/sessions/${encodeURIComponent(sid)}/messages`, body, { raw: true });
    } catch (e) {
      if (e.status !== 409 || Date.now() > until || gen !== state.generation) throw e;
      setAskStatus(WAITING_TEXT);
      await sleep(1000);
    }
  }
}

async function onAsk(ev) {
  ev.preventDefault();
  const input = $("question-input");
  const question = input.value.trim();
  if (!question || state.busy) return;
  state.busy = true;
  $("ask-button").disabled = true;
  const log = $("chat-log");
  const gen = state.generation;
  try {
    // Never send the question without an image that is still being uploaded: wait for it, visibly.
    if (state.uploads.size) {
      setAskStatus(WAITING_TEXT);
      const failed = await settleUploads();
      if (gen !== state.generation) return;
      if (failed.length) {
        setAskStatus("");
        throw new Error(`The question was not sent: the image could not be loaded (${failed[0].message}). ` +
          "Upload it again, then ask.");
      }
    }
    const sid = await ensureSession();
    const body = { question, history: $("history").value.trim() || null };
    if (state.studies.current) body.study_id = state.studies.current.id;
    if (state.studies.prior) body.prior_study_id = state.studies.prior.id;
    if (study() && state.showing === "current") body.image_index = state.n;
    const resp = await postQuestion(sid, body, gen);
    setAskStatus("");
    log.append(userBubble(question));
    input.value = "";
    const node = $("answer-template").content.firstElementChild.cloneNode(true);
    const text = node.querySelector(".answer-text");
    text.classList.add("streaming");
    text.textContent = "";
    node.setAttribute("aria-busy", "true");
    log.append(node);
    log.scrollTop = log.scrollHeight;
    let final = null;
    await readSSE(resp, (name, data) => {
      if (name === "delta") { text.textContent += data.text; log.scrollTop = log.scrollHeight; }
      else if (name === "status" && !text.textContent) text.textContent = "";
      else if (name === "final") final = data;
      else if (name === "error") throw new ApiError(500, data);
    });
    node.removeAttribute("aria-busy");
    if (final) {
      fillAnswer(node, final.answer);
      node.dataset.messageId = final.message_id;
      if (study()) await showImage();
    }
    await refreshSessions();
  } catch (e) {
    setAskStatus("");
    const err = document.createElement("div");
    err.className = "msg error";
    err.setAttribute("role", "alert");
    err.textContent = errorText(e);
    log.append(err);
    for (const n of log.querySelectorAll(".streaming")) n.classList.remove("streaming");
  } finally {
    state.busy = false;
    $("ask-button").disabled = false;
    log.scrollTop = log.scrollHeight;
  }
}

/* ---------- account: password, sessions, studies, users ---------- */

function setText(id, text, kind = "") {
  const el = $(id);
  el.textContent = text;
  if (el.classList.contains("status")) el.className = "status " + kind;
}

function mib(bytes) {
  return bytes < 1048576 ? `${Math.ceil(bytes / 1024)} KiB` : `${(bytes / 1048576).toFixed(1)} MiB`;
}

async function openAccount() {
  for (const id of ["pw-status", "study-status", "admin-status"]) setText(id, "");
  $("account-dialog").showModal();
  await refreshAccount();
}

async function refreshAccount() {
  try {
    const [storage, studies] = await Promise.all([api("GET", "/api/me/storage"), api("GET", "/api/studies")]);
    setText("storage-status", storage.quota_bytes
      ? `${mib(storage.used_bytes)} of your ${mib(storage.quota_bytes)} quota used.`
      : `${mib(storage.used_bytes)} used.`);
    const list = $("study-list");
    list.replaceChildren();
    for (const s of studies) {
      const li = document.createElement("li");
      li.setAttribute("data-testid", "study-item");
      li.dataset.id = String(s.id);
      const label = document.createElement("span");
      label.textContent = `Study ${s.id}: ${s.modality || s.source_kind}, ${new Date(s.created_at).toLocaleString()}`;
      const gap = document.createElement("span");
      gap.className = "spacer";
      const del = document.createElement("button");
      del.type = "button";
      del.className = "secondary danger";
      del.setAttribute("data-testid", "delete-study");
      del.textContent = "Delete";
      del.addEventListener("click", () => deleteStudy(s.id));
      li.append(label, gap, del);
      list.append(li);
    }
    if (!studies.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No studies stored.";
      list.append(li);
    }
    $("admin-section").hidden = !(state.user && state.user.is_admin);
    if (state.user && state.user.is_admin) await refreshUsers();
  } catch (e) {
    setText("study-status", errorText(e), "bad");
  }
}

async function deleteStudy(id) {
  if (!window.confirm(`Delete study ${id} with its images, overlays and the chat sessions about it? ` +
    "This cannot be undone.")) return;
  try {
    await api("DELETE", `/api/studies/${id}`);
    const shown = [state.studies.current, state.studies.prior].some((s) => s && s.id === id);
    if (shown) resetSession();
    setText("study-status", `Study ${id} deleted.`, "ok");
    setStatus(`Study ${id} deleted.`, "ok");
    await refreshSessions();
    if ($("account-dialog").open) await refreshAccount();
  } catch (e) {
    setText("study-status", errorText(e), "bad");
    setStatus(errorText(e), "bad");
  }
}

async function onChangePassword(ev) {
  ev.preventDefault();
  const current = $("pw-current").value;
  const next = $("pw-new").value;
  if (next !== $("pw-confirm").value) {
    setText("pw-status", "The new passwords do not match.", "bad");
    return;
  }
  $("pw-submit").disabled = true;
  try {
    await api("POST", "/api/me/password", { current_password: current, new_password: next });
    for (const id of ["pw-current", "pw-new", "pw-confirm"]) $(id).value = "";
    setText("pw-status", "Password changed. Your other sessions were signed out.", "ok");
  } catch (e) {
    setText("pw-status", errorText(e), "bad");
  } finally {
    $("pw-submit").disabled = false;
  }
}

async function onRevokeOthers() {
  try {
    const r = await api("POST", "/api/me/sessions/revoke");
    setText("pw-status", `Signed out of ${r.revoked} other session(s).`, "ok");
  } catch (e) {
    setText("pw-status", errorText(e), "bad");
  }
}

function userButton(label, testid, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "secondary";
  b.textContent = label;
  b.setAttribute("data-testid", testid);
  b.addEventListener("click", action);
  return b;
}

async function adminAction(run, done) {
  try {
    await run();
    setText("admin-status", done, "ok");
  } catch (e) {
    setText("admin-status", errorText(e), "bad");
  }
  await refreshUsers();
}

async function refreshUsers() {
  const rows = $("user-rows");
  const users = await api("GET", "/api/users");
  rows.replaceChildren();
  for (const u of users) {
    const tr = document.createElement("tr");
    tr.setAttribute("data-testid", "user-row");
    tr.dataset.username = u.username;
    const name = document.createElement("td");
    name.textContent = u.username + (u.is_admin ? " (admin)" : "");
    const status = document.createElement("td");
    status.textContent = u.is_active ? "active" : "disabled";
    const sessions = document.createElement("td");
    sessions.textContent = String(u.sessions);
    const actions = document.createElement("td");
    const path = `/api/users/${encodeURIComponent(u.username)}`;
    const self = state.user && u.username === state.user.username;
    if (!self) {
      actions.append(userButton(u.is_active ? "Disable" : "Enable", "user-toggle", () => adminAction(
        () => api("PATCH", path, { is_active: !u.is_active }),
        `${u.username} ${u.is_active ? "disabled and signed out" : "enabled"}.`)));
    }
    actions.append(userButton("Sign out", "user-revoke", () => adminAction(
      () => api("POST", `${path}/revoke`), `${u.username} signed out everywhere.`)));
    actions.append(userButton("Set password", "user-password", () => {
      const pw = window.prompt(`New password for ${u.username} (at least 10 characters):`);
      if (pw) adminAction(() => api("PATCH", path, { password: pw }), `Password of ${u.username} set.`);
    }));
    if (!self) {
      actions.append(userButton("Delete", "user-delete", () => {
        if (window.confirm(`Delete ${u.username} with all their studies and chats? This cannot be undone.`)) {
          adminAction(() => api("DELETE", path), `${u.username} deleted.`);
        }
      }));
    }
    tr.append(name, status, sessions, actions);
    rows.append(tr);
  }
}

/* ---------- start ---------- */

async function start() {
  $("login-form").addEventListener("submit", onLogin);
  $("signout").addEventListener("click", onSignOut);
  $("account-button").addEventListener("click", openAccount);
  $("account-close").addEventListener("click", () => $("account-dialog").close());
  $("password-form").addEventListener("submit", onChangePassword);
  $("revoke-others").addEventListener("click", onRevokeOthers);
  $("delete-shown-study").addEventListener("click", () => { if (study()) deleteStudy(study().id); });
  $("new-session").addEventListener("click", () => { resetSession(); refreshSessions(); setStatus(""); });
  $("ask-form").addEventListener("submit", onAsk);
  $("question-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("ask-form").requestSubmit(); }
  });
  wireDrop("drop-current", $("upload-current"), "current");
  wireDrop("drop-prior", $("upload-prior"), "prior");
  $("pacs-form").addEventListener("submit", onPacsOpen);
  $("pacs-kind").addEventListener("change", () => {
    $("pacs-value").placeholder = $("pacs-kind").value === "study_uid" ? "e.g. 1.2.840.113619.2.55" : "e.g. A12345";
  });
  wireViewer();
  try {
    const me = await api("GET", "/api/me");
    state.csrf = (readCookie("__Host-zebra_csrf") || readCookie("zebra_csrf"));
    await showApp(me);
  } catch (_) {
    showLogin();
  }
}

document.addEventListener("DOMContentLoaded", start);
