// TrayLens tray layout page: an admin draws a kiosk's tray compartments on its empty-tray
// reference photo and saves them with PUT /v1/kiosks/{id}/layout (docs/TRAY_LAYOUT.md).
// Plain JavaScript, no libraries: the page must work on a kiosk without internet.
// Polygons are kept in the reference photo's own pixels; the SVG's viewBox is that pixel
// grid, so the drawing scales with the displayed photo and pointer positions are mapped back.
"use strict";

// common.js: element helpers, the status and error lines, the API key, the hues.
const {
  KEY_STORAGE, PALETTE, $, el, svgEl, setStatus, showError, clearError, apiKey, onDroppedFile,
} = TrayCommon;
const KIOSK_STORAGE = "traylens.layoutKiosk";
const HANDLE_PX = 7; // vertex handle radius, screen px (the selected compartment's)
const SMALL_HANDLE_PX = 4.5; // the other compartments' handles: less clutter, still draggable
const CLOSE_PX = 12; // a click this near the first point closes a new compartment
const MIN_POINTS = 3;

const state = {
  kiosks: [],
  kioskId: "",
  saved: null, // the service's layout answer for this kiosk, or null when it has none
  reference: null, // Blob of the reference photo (uploaded again on save)
  referenceName: "",
  referenceUrl: null,
  width: 0,
  height: 0,
  compartments: [], // [{slot, points: [[x, y], ...]}], reference px
  selected: -1,
  mode: "edit", // or "draw" while a new compartment's points are clicked
  draft: [],
  drag: null,
  lastInserted: null,
  dirty: false,
  busy: false,
  request: 0,
};

const round1 = (v) => Math.round(v * 10) / 10;
const colour = (index) => PALETTE[index % PALETTE.length];

// ---- messages ---------------------------------------------------------------------

function setPageState(name) { document.body.setAttribute("data-state", name); }

// The layout API answers {"error", "detail"}; FastAPI's own checks {"detail": [{loc, msg}]}.
function describeApiError(what, status, body) {
  let detail = body && typeof body === "object" && body.detail !== undefined ? body.detail : body;
  if (Array.isArray(detail)) {
    detail = detail.map((d) => (d && d.msg
      ? `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}` : JSON.stringify(d))).join("; ");
  } else if (detail && typeof detail === "object") {
    detail = detail.message || JSON.stringify(detail);
  }
  const error = body && typeof body === "object" && typeof body.error === "string" ? body.error : "";
  let text = detail ? String(detail) : error || "no explanation given";
  if (error && detail && !String(detail).includes(error)) text = `${error}: ${text}`;
  const hint = status === 401 || status === 403 ? " Check the API key." : "";
  return `${what} failed (HTTP ${status}): ${text}${hint}`;
}

function markDirty(on = true) {
  state.dirty = on;
  $("dirty").hidden = !on;
}

// ---- the service ------------------------------------------------------------------

class PageError extends Error {}

async function api(path, options = {}) {
  const key = apiKey();
  if (!key) {
    $("api-key").focus();
    throw new PageError("Enter an API key first (ask the service's administrator for one).");
  }
  localStorage.setItem(KEY_STORAGE, key);
  const headers = { Authorization: `Bearer ${key}`, ...(options.headers || {}) };
  try {
    return await fetch(path, { ...options, headers });
  } catch (err) {
    throw new PageError(`The service could not be reached: ${err.message || err}`);
  }
}

async function failIfNotOk(what, answer) {
  if (answer.ok) return;
  const body = await answer.json().catch(() => null);
  throw new PageError(describeApiError(what, answer.status, body));
}

// Runs one request-making action: busy buttons, errors shown, page state for tests.
async function run(action, doneState = "ready") {
  clearError();
  state.busy = true;
  updateButtons();
  setPageState("busy");
  try {
    await action();
    setPageState(doneState);
  } catch (err) {
    showError(err instanceof PageError ? err.message : `Something went wrong: ${err.message || err}`);
    setPageState("error");
  } finally {
    state.busy = false;
    updateButtons();
  }
}

const layoutPath = (kioskId) => `/v1/kiosks/${encodeURIComponent(kioskId)}/layout`;

// ---- kiosks and their layouts -----------------------------------------------------

async function loadKiosks() {
  const select = $("kiosk-select");
  const answer = await api("/v1/kiosks");
  await failIfNotOk("Listing the kiosks", answer);
  state.kiosks = await answer.json();
  const wanted = state.kioskId || localStorage.getItem(KIOSK_STORAGE) || "";
  select.replaceChildren(el("option", { value: "" },
    state.kiosks.length ? "Choose a kiosk…" : "No kiosks yet (register one: POST /v1/kiosks)"));
  for (const kiosk of state.kiosks) {
    select.append(el("option", { value: kiosk.id }, `${kiosk.name} (${kiosk.id.slice(0, 8)})`));
  }
  select.disabled = !state.kiosks.length;
  const known = state.kiosks.some((k) => k.id === wanted);
  select.value = known ? wanted : "";
  if (known && wanted !== state.kioskId) {
    await openKiosk(wanted);
  } else if (!known) {
    setStatus(state.kiosks.length ? `${state.kiosks.length} kiosk(s): choose one.` : "No kiosks yet.");
  }
}

function kioskName(id) {
  const kiosk = state.kiosks.find((k) => k.id === id);
  return kiosk ? kiosk.name : id;
}

async function openKiosk(kioskId) {
  const request = ++state.request;
  state.kioskId = kioskId;
  state.saved = null;
  resetEditor();
  if (!kioskId) { render(); return; }
  localStorage.setItem(KIOSK_STORAGE, kioskId);
  setStatus(`Loading the layout of ${kioskName(kioskId)}…`);
  const answer = await api(layoutPath(kioskId));
  if (request !== state.request) return;
  if (answer.status === 404) {
    render();
    setStatus(`${kioskName(kioskId)} has no layout yet: choose a photo of its empty tray.`);
    return;
  }
  await failIfNotOk("Loading the layout", answer);
  const layout = await answer.json();
  const image = await api(layout.reference_url || `${layoutPath(kioskId)}/reference`);
  await failIfNotOk("Loading the reference photo", image);
  const blob = await image.blob();
  if (request !== state.request) return;
  await setReference(blob, "saved reference photo");
  showSaved(layout);
  setStatus(`Loaded the saved layout of ${kioskName(kioskId)}: ${describeCount(layout.compartments.length)}.`);
}

function showSaved(layout) {
  state.saved = layout;
  state.compartments = layout.compartments.map((c) => ({
    slot: c.slot, points: c.polygon.map(([x, y]) => [x, y]),
  }));
  $("tray-width").value = layout.tray_width_cm ?? "";
  $("tray-height").value = layout.tray_height_cm ?? "";
  state.selected = -1;
  markDirty(false);
  render();
}

function describeCount(n) { return `${n} compartment${n === 1 ? "" : "s"}`; }

function resetEditor() {
  if (state.referenceUrl) URL.revokeObjectURL(state.referenceUrl);
  Object.assign(state, {
    reference: null, referenceName: "", referenceUrl: null, width: 0, height: 0,
    compartments: [], selected: -1, mode: "edit", draft: [], drag: null,
  });
  $("tray-width").value = "";
  $("tray-height").value = "";
  $("reference-photo").removeAttribute("src");
  markDirty(false);
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = $("reference-photo");
    img.onload = () => resolve(img);
    img.onerror = () => reject(new PageError("The browser cannot display this photo: choose a JPEG, PNG or WebP."));
    img.src = url;
  });
}

async function setReference(blob, name) {
  const url = URL.createObjectURL(blob);
  const img = await loadImage(url);
  if (state.referenceUrl) URL.revokeObjectURL(state.referenceUrl);
  const [oldW, oldH] = [state.width, state.height];
  Object.assign(state, {
    reference: blob, referenceName: name, referenceUrl: url,
    width: img.naturalWidth, height: img.naturalHeight,
  });
  // Compartments drawn on another photo size keep their place relative to the photo.
  if (state.compartments.length && oldW && (oldW !== state.width || oldH !== state.height)) {
    const [sx, sy] = [state.width / oldW, state.height / oldH];
    for (const c of state.compartments) c.points = c.points.map(([x, y]) => [round1(x * sx), round1(y * sy)]);
    setStatus("The compartments were scaled to the new photo: check them, or propose them again.");
  }
  // As wide as the panel, unless that makes the photo taller than most of the screen.
  $("layout-frame").style.width = `min(100%, calc(80vh * ${state.width / state.height}))`;
  $("reference-caption").textContent = `${name}: ${state.width} × ${state.height} px.`;
}

async function chooseFile(file) {
  if (!file) return;
  await run(async () => {
    await setReference(file, file.name || "photo");
    if (!state.compartments.length) {
      setStatus(`${file.name} loaded: propose the compartments or draw them with “Add compartment”.`);
    }
    markDirty(true);
    render();
  });
}

// ---- propose, save, delete --------------------------------------------------------

async function propose() {
  await run(async () => {
    if (!state.kioskId) throw new PageError("Choose a kiosk first.");
    const form = new FormData();
    if (state.reference) form.append("reference", state.reference, fileName());
    setStatus("Looking for the compartments…");
    const answer = await api(`${layoutPath(state.kioskId)}/propose`, { method: "POST", body: form });
    await failIfNotOk("Proposing compartments", answer);
    const proposal = await answer.json();
    const before = state.compartments.length;
    // The service answers in the photo's upright pixels, as the browser shows it; should the
    // two ever disagree, the proposal is scaled onto the photo shown.
    const sx = proposal.width ? state.width / proposal.width : 1;
    const sy = proposal.height ? state.height / proposal.height : 1;
    state.compartments = proposal.compartments.map((c) => ({
      slot: c.slot, points: c.polygon.map(([x, y]) => [round1(clampX(x * sx)), round1(clampY(y * sy))]),
    }));
    state.selected = -1;
    cancelDraft();
    markDirty(true);
    render();
    const replaced = before ? ` (replacing the ${before} drawn before)` : "";
    setStatus(state.compartments.length
      ? `Proposed ${describeCount(state.compartments.length)}${replaced}: check them, name the slots, then save.`
      : "No compartments were found on this photo: draw them with “Add compartment”.");
  }, "proposed");
}

function fileName() {
  const type = state.reference && state.reference.type;
  if (state.reference && state.reference.name) return state.reference.name;
  return type === "image/jpeg" ? "reference.jpg" : type === "image/webp" ? "reference.webp" : "reference.png";
}

function trayCm(id) {
  const input = $(id);
  const text = input.value.trim();
  if (!text) return null;
  const value = Number(text);
  if (!input.checkValidity() || !Number.isFinite(value) || value <= 0) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
    throw new PageError("Tray width and height must be positive numbers of centimetres (or left empty).");
  }
  input.removeAttribute("aria-invalid");
  return value;
}

async function save() {
  const problems = validateNames();
  if (problems) {
    clearError();
    showError(`Not saved: ${problems} Fix the slot names marked below.`);
    setPageState("invalid");
    const bad = document.querySelector(".slot-name[aria-invalid='true']");
    if (bad) bad.focus();
    return;
  }
  await run(async () => {
    if (!state.kioskId) throw new PageError("Choose a kiosk first.");
    if (!state.reference) throw new PageError("Choose a photo of the empty tray first.");
    if (!state.compartments.length) throw new PageError("Draw or propose at least one compartment first.");
    if (state.mode === "draw") finishDraft();
    const width = trayCm("tray-width");
    const height = trayCm("tray-height");
    const form = new FormData();
    form.append("reference", state.reference, fileName());
    form.append("compartments", JSON.stringify(state.compartments.map((c) => ({
      slot: c.slot.trim(), polygon: c.points.map(([x, y]) => [round1(x), round1(y)]),
    }))));
    if (width !== null) form.append("tray_width_cm", String(width));
    if (height !== null) form.append("tray_height_cm", String(height));
    setStatus("Saving…");
    const answer = await api(layoutPath(state.kioskId), { method: "PUT", body: form });
    await failIfNotOk("Saving the layout", answer);
    const layout = await answer.json();
    showSaved(layout);
    setStatus(`Saved the layout of ${kioskName(state.kioskId)}: ${describeCount(layout.compartments.length)}.`);
  }, "saved");
}

async function deleteLayout() {
  if (!state.kioskId || !state.saved) return;
  if (!window.confirm(`Delete the saved tray layout of ${kioskName(state.kioskId)}? `
      + "Its meal photos will then be analysed without compartments.")) return;
  await run(async () => {
    const answer = await api(layoutPath(state.kioskId), { method: "DELETE" });
    if (answer.status !== 404) await failIfNotOk("Deleting the layout", answer);
    state.saved = null;
    markDirty(state.compartments.length > 0);
    setStatus(`Deleted the saved layout of ${kioskName(state.kioskId)}. `
      + "The drawing stays on this page: “Save layout” would store it again.");
  }, "deleted");
}

// ---- slot names -------------------------------------------------------------------

// Returns a sentence describing the problems, or "" when every name is usable.
function validateNames() {
  const names = state.compartments.map((c) => c.slot.trim());
  const counts = new Map();
  for (const name of names) counts.set(name, (counts.get(name) || 0) + 1);
  let empty = 0;
  let duplicate = 0;
  names.forEach((name, index) => {
    let message = "";
    if (!name) { message = "Give this compartment a slot name."; empty += 1; }
    else if (counts.get(name) > 1) {
      message = `“${name}” is also used by another compartment: slot names must be unique.`;
      duplicate += 1;
    }
    const input = $(`slot-${index}`);
    const error = $(`slot-${index}-error`);
    if (!input || !error) return;
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    error.textContent = message;
    error.hidden = !message;
  });
  const parts = [];
  if (duplicate) parts.push(`${duplicate} compartments share a slot name.`);
  if (empty) parts.push(`${empty} compartment${empty === 1 ? " has" : "s have"} no slot name.`);
  return parts.join(" ");
}

function uniqueSlotName() {
  const taken = new Set(state.compartments.map((c) => c.slot.trim()));
  let n = state.compartments.length + 1;
  while (taken.has(`slot-${n}`)) n += 1;
  return `slot-${n}`;
}

// ---- start ------------------------------------------------------------------------

function readFragment() { TrayCommon.readFragment({ kiosk: KIOSK_STORAGE }); }

function setUpInputs() {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, apiKey());
    if (apiKey()) run(loadKiosks);
  });
  $("reload-kiosks").addEventListener("click", () => run(loadKiosks));
  $("kiosk-select").addEventListener("change", (e) => {
    const wanted = e.target.value;
    if (state.dirty && !window.confirm("Discard the unsaved changes to this kiosk's layout?")) {
      e.target.value = state.kioskId;
      return;
    }
    run(() => openKiosk(wanted));
  });
  $("reference-input").addEventListener("change", (e) => {
    chooseFile(e.target.files[0]);
    e.target.value = ""; // the same file may be chosen again
  });
  const zone = $("drop-zone");
  onDroppedFile(zone, (file) => chooseFile(file));
  for (const id of ["tray-width", "tray-height"]) $(id).addEventListener("input", () => markDirty(true));
}

function setUpEditor() {
  const svg = $("layout-overlay");
  svg.addEventListener("pointerdown", onPointerDown);
  svg.addEventListener("pointermove", onPointerMove);
  svg.addEventListener("pointerup", onPointerUp);
  svg.addEventListener("pointercancel", onPointerUp);
  svg.addEventListener("dblclick", onDoubleClick);
  svg.addEventListener("contextmenu", onContextMenu);
  svg.addEventListener("keydown", onHandleKey);
  svg.addEventListener("focusin", (e) => {
    if (e.target.classList && e.target.classList.contains("handle")) select(Number(e.target.getAttribute("data-c")));
  });
  document.addEventListener("keydown", onDocumentKey);
  $("propose-button").addEventListener("click", propose);
  $("add-button").addEventListener("click", () => (state.mode === "draw" ? finishDraft() : startDraft()));
  $("save-button").addEventListener("click", save);
  $("delete-button").addEventListener("click", deleteLayout);
  const list = $("compartment-list");
  list.addEventListener("input", (e) => {
    if (!e.target.classList.contains("slot-name")) return;
    const c = Number(e.target.getAttribute("data-c"));
    state.compartments[c].slot = e.target.value;
    markDirty(true);
    validateNames();
    updateCompartment(c);
  });
  list.addEventListener("focusin", (e) => {
    const row = e.target.closest(".compartment-row");
    if (row && Number(row.dataset.c) !== state.selected) select(Number(row.dataset.c));
  });
  list.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action='delete']");
    if (button) deleteCompartment(Number(button.getAttribute("data-c")));
  });
  // Handles keep their on-screen size when the photo is shown larger or smaller.
  let lastWidth = 0;
  new ResizeObserver(() => {
    const width = svg.getBoundingClientRect().width;
    if (!state.drag && width && Math.abs(width - lastWidth) > 1) { lastWidth = width; renderOverlay(); }
  }).observe($("layout-frame"));
}

document.addEventListener("DOMContentLoaded", () => {
  readFragment();
  setUpInputs();
  setUpEditor();
  render();
  if (apiKey()) run(loadKiosks);
  else setStatus("Enter an API key to list the kiosks.");
});
