// The layout page's drawing and editing: compartments as SVG polygons over the reference
// photo, in its pixels; drag, add and remove points, draw and delete compartments. Shares the
// page's state with layout.js (loaded after this file; both run before DOMContentLoaded).
"use strict";

// ---- drawing ----------------------------------------------------------------------

function screenScale() {
  const rect = $("layout-overlay").getBoundingClientRect();
  return rect.width > 0 && state.width ? state.width / rect.width : 1;
}

function toReference(event) {
  const rect = $("layout-overlay").getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * state.width;
  const y = ((event.clientY - rect.top) / rect.height) * state.height;
  return [clampX(x), clampY(y)];
}

const clampX = (x) => Math.min(Math.max(0, x), state.width);
const clampY = (y) => Math.min(Math.max(0, y), state.height);

function pointsAttr(points) { return points.map(([x, y]) => `${x},${y}`).join(" "); }

function centroid(points) {
  const n = points.length || 1;
  return points.reduce(([sx, sy], [x, y]) => [sx + x / n, sy + y / n], [0, 0]);
}

function handleLabel(c, v) {
  const comp = state.compartments[c];
  const [x, y] = comp.points[v];
  return `${comp.slot.trim() || "unnamed"}: point ${v + 1} of ${comp.points.length} at ${Math.round(x)}, ${Math.round(y)}`;
}

function renderOverlay() {
  const svg = $("layout-overlay");
  svg.replaceChildren();
  if (!state.width) return;
  svg.setAttribute("viewBox", `0 0 ${state.width} ${state.height}`);
  svg.classList.toggle("drawing", state.mode === "draw");
  const unit = screenScale();
  const order = state.compartments.map((_, i) => i).filter((i) => i !== state.selected);
  if (state.selected >= 0) order.push(state.selected); // the selected one on top
  const labels = svgEl("g", { class: "labels" });
  for (const c of order) {
    const comp = state.compartments[c];
    const group = svgEl("g", { class: `compartment-group${c === state.selected ? " selected" : ""}`, "data-c": c });
    group.style.color = colour(c);
    group.append(svgEl("polygon", { class: "compartment", points: pointsAttr(comp.points), "data-c": c }));
    comp.points.forEach((p, v) => {
      const q = comp.points[(v + 1) % comp.points.length];
      group.append(svgEl("line", { class: "edge", x1: p[0], y1: p[1], x2: q[0], y2: q[1], "data-c": c, "data-v": v }));
    });
    comp.points.forEach(([x, y], v) => {
      const handle = svgEl("circle", {
        class: "handle", cx: x, cy: y, r: (c === state.selected ? HANDLE_PX : SMALL_HANDLE_PX) * unit,
        "data-c": c, "data-v": v, tabindex: 0, role: "button", "aria-label": handleLabel(c, v),
      });
      group.append(handle);
    });
    svg.append(group);
    const [lx, ly] = centroid(comp.points);
    const label = svgEl("text", { x: lx, y: ly, "data-c": c, "font-size": 15 * unit, "stroke-width": 3 * unit,
      "text-anchor": "middle",
      "dominant-baseline": "middle" });
    label.textContent = comp.slot;
    labels.append(label);
  }
  svg.append(labels);
  if (state.mode === "draw" && state.draft.length) {
    svg.append(svgEl("polyline", { class: "draft", points: pointsAttr(state.draft) }));
    state.draft.forEach(([x, y], i) => svg.append(svgEl("circle", {
      class: `draft-point${i === 0 ? " first" : ""}`, cx: x, cy: y, r: HANDLE_PX * unit,
    })));
  }
}

// During a drag only one compartment's attributes change (the captured pointer stays put).
function updateCompartment(c) {
  const comp = state.compartments[c];
  const svg = $("layout-overlay");
  const polygon = svg.querySelector(`polygon.compartment[data-c="${c}"]`);
  if (polygon) polygon.setAttribute("points", pointsAttr(comp.points));
  comp.points.forEach(([x, y], v) => {
    const q = comp.points[(v + 1) % comp.points.length];
    const edge = svg.querySelector(`line.edge[data-c="${c}"][data-v="${v}"]`);
    if (edge) for (const [k, val] of Object.entries({ x1: x, y1: y, x2: q[0], y2: q[1] })) edge.setAttribute(k, val);
    const handle = svg.querySelector(`circle.handle[data-c="${c}"][data-v="${v}"]`);
    if (handle) {
      handle.setAttribute("cx", x);
      handle.setAttribute("cy", y);
      handle.setAttribute("aria-label", handleLabel(c, v));
    }
  });
  const label = svg.querySelector(`.labels text[data-c="${c}"]`);
  if (label) {
    const [lx, ly] = centroid(comp.points);
    label.setAttribute("x", lx);
    label.setAttribute("y", ly);
    label.textContent = comp.slot;
  }
}

function renderList() {
  const list = $("compartment-list");
  list.replaceChildren();
  state.compartments.forEach((comp, c) => {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = colour(c);
    const input = el("input", {
      id: `slot-${c}`, class: "slot-name", type: "text", value: comp.slot, autocomplete: "off",
      spellcheck: "false", maxlength: "64", "aria-describedby": `slot-${c}-error`, "data-c": c,
    });
    const remove = el("button", { type: "button", class: "button small danger", "data-action": "delete",
      "data-c": c, "aria-label": `Delete compartment ${comp.slot || c + 1}` }, "Delete");
    const row = el("li", { class: `compartment-row${c === state.selected ? " selected" : ""}`, "data-c": c },
      swatch,
      el("label", { for: `slot-${c}` }, "Slot"),
      input,
      el("span", { class: "help points" }, `${comp.points.length} points`),
      remove,
      el("p", { id: `slot-${c}-error`, class: "field-error", hidden: "" }));
    list.append(row);
  });
  validateNames();
}

function render() {
  const hasPhoto = Boolean(state.width);
  $("layout-figure").hidden = !hasPhoto;
  $("empty-note").hidden = hasPhoto;
  renderOverlay();
  renderList();
  updateButtons();
}

function updateButtons() {
  const busy = state.busy;
  $("propose-button").disabled = busy || !state.kioskId || !(state.reference || state.saved);
  $("add-button").disabled = busy || !state.width;
  $("add-button").setAttribute("aria-pressed", String(state.mode === "draw"));
  $("add-button").textContent = state.mode === "draw" ? "Finish compartment" : "Add compartment";
  $("save-button").disabled = busy || !state.kioskId || !state.reference || !state.compartments.length;
  $("delete-button").disabled = busy || !state.kioskId || !state.saved;
  $("reload-kiosks").disabled = busy;
}

// Selection changes classes and stacking only: the nodes (and a pointer on them) stay.
function select(c) {
  state.selected = c;
  for (const row of document.querySelectorAll(".compartment-row")) {
    row.classList.toggle("selected", Number(row.dataset.c) === c);
  }
  const svg = $("layout-overlay");
  const unit = screenScale();
  for (const group of svg.querySelectorAll(".compartment-group")) {
    const on = Number(group.dataset.c) === c;
    group.classList.toggle("selected", on);
    for (const handle of group.querySelectorAll(".handle")) {
      handle.setAttribute("r", (on ? HANDLE_PX : SMALL_HANDLE_PX) * unit);
    }
  }
  const group = svg.querySelector(`.compartment-group[data-c="${c}"]`);
  const labels = svg.querySelector(".labels");
  if (group && labels && group.nextSibling !== labels) svg.insertBefore(group, labels);
}

// ---- editing ----------------------------------------------------------------------

function startDraft() {
  state.mode = "draw";
  state.draft = [];
  state.selected = -1;
  renderOverlay();
  updateButtons();
  setStatus("Click the new compartment's corners on the photo; click the first point or press Enter to finish, Escape to cancel.");
}

function cancelDraft() {
  state.mode = "edit";
  state.draft = [];
}

function finishDraft() {
  if (state.draft.length < MIN_POINTS) {
    const had = state.draft.length;
    cancelDraft();
    render();
    setStatus(had ? `A compartment needs at least ${MIN_POINTS} points: nothing was added.` : "Nothing was added.");
    return;
  }
  state.compartments.push({ slot: uniqueSlotName(), points: state.draft.map(([x, y]) => [round1(x), round1(y)]) });
  cancelDraft();
  state.selected = state.compartments.length - 1;
  markDirty(true);
  render();
  const input = $(`slot-${state.selected}`);
  setStatus("Compartment added: give it its slot name.");
  if (input) { input.focus(); input.select(); }
}

function addDraftPoint(event) {
  const p = toReference(event);
  const unit = screenScale();
  if (state.draft.length >= MIN_POINTS) {
    const [fx, fy] = state.draft[0];
    if (Math.hypot(p[0] - fx, p[1] - fy) <= CLOSE_PX * unit) { finishDraft(); return; }
  }
  state.draft.push(p);
  renderOverlay();
}

function closestOnSegment(p, a, b) {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const len = dx * dx + dy * dy;
  const t = len ? Math.min(1, Math.max(0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len)) : 0;
  return [round1(a[0] + t * dx), round1(a[1] + t * dy)];
}

function insertVertex(c, v, event) {
  const points = state.compartments[c].points;
  const p = closestOnSegment(toReference(event), points[v], points[(v + 1) % points.length]);
  points.splice(v + 1, 0, p);
  state.lastInserted = { c, v: v + 1, time: Date.now() };
  markDirty(true);
  return v + 1;
}

function removeVertex(c, v) {
  const points = state.compartments[c].points;
  if (points.length <= MIN_POINTS) {
    setStatus(`A compartment needs at least ${MIN_POINTS} points: delete the compartment instead.`);
    return false;
  }
  points.splice(v, 1);
  markDirty(true);
  setStatus(`Removed point ${v + 1} of ${state.compartments[c].slot || "the compartment"}.`);
  return true;
}

function deleteCompartment(c) {
  const [gone] = state.compartments.splice(c, 1);
  state.selected = -1;
  markDirty(true);
  render();
  setStatus(`Deleted compartment ${gone.slot || c + 1}.`);
  const next = document.querySelector(".slot-name") || $("add-button");
  next.focus();
}

function onPointerDown(event) {
  if (event.button !== 0 || state.busy) return;
  const svg = $("layout-overlay");
  if (state.mode === "draw") {
    event.preventDefault();
    addDraftPoint(event);
    return;
  }
  const target = event.target;
  const c = Number(target.getAttribute("data-c"));
  if (target.classList.contains("handle") || target.classList.contains("edge")) {
    event.preventDefault();
    let v = Number(target.getAttribute("data-v"));
    state.selected = c;
    if (target.classList.contains("edge")) {
      v = insertVertex(c, v, event);
      renderOverlay();
      renderList();
    }
    select(c);
    // The point keeps its offset from the pointer: grabbing a handle off-centre does not jump it.
    const [px, py] = toReference(event);
    const [vx, vy] = state.compartments[c].points[v];
    state.drag = { kind: "vertex", c, v, pointerId: event.pointerId, moved: false, offset: [vx - px, vy - py] };
    svg.setPointerCapture(event.pointerId);
    const handle = svg.querySelector(`circle.handle[data-c="${c}"][data-v="${v}"]`);
    if (handle) handle.focus({ preventScroll: true });
  } else if (target.classList.contains("compartment")) {
    event.preventDefault();
    select(c);
    state.drag = {
      kind: "shape", c, pointerId: event.pointerId, moved: false, start: toReference(event),
      original: state.compartments[c].points.map((p) => [...p]),
    };
    svg.setPointerCapture(event.pointerId);
  } else {
    select(-1);
  }
}

function onPointerMove(event) {
  const drag = state.drag;
  if (!drag || event.pointerId !== drag.pointerId) return;
  const p = toReference(event);
  const comp = state.compartments[drag.c];
  if (drag.kind === "vertex") {
    comp.points[drag.v] = [round1(clampX(p[0] + drag.offset[0])), round1(clampY(p[1] + drag.offset[1]))];
  } else {
    const xs = drag.original.map((q) => q[0]);
    const ys = drag.original.map((q) => q[1]);
    // The whole shape stays on the photo.
    const dx = Math.min(Math.max(p[0] - drag.start[0], -Math.min(...xs)), state.width - Math.max(...xs));
    const dy = Math.min(Math.max(p[1] - drag.start[1], -Math.min(...ys)), state.height - Math.max(...ys));
    comp.points = drag.original.map(([x, y]) => [round1(x + dx), round1(y + dy)]);
  }
  drag.moved = true;
  markDirty(true);
  updateCompartment(drag.c);
}

function onPointerUp(event) {
  const drag = state.drag;
  if (!drag || event.pointerId !== drag.pointerId) return;
  state.drag = null;
  const svg = $("layout-overlay");
  if (svg.hasPointerCapture(event.pointerId)) svg.releasePointerCapture(event.pointerId);
  if (drag.moved) {
    const [x, y] = drag.kind === "vertex" ? state.compartments[drag.c].points[drag.v] : [0, 0];
    setStatus(drag.kind === "vertex"
      ? `Moved a point of ${state.compartments[drag.c].slot} to ${Math.round(x)}, ${Math.round(y)}.`
      : `Moved ${state.compartments[drag.c].slot}.`);
  }
}

// After a drag the pointer was captured by the SVG, so clicks name it, not the point under them.
function pointUnder(event) {
  const target = document.elementFromPoint(event.clientX, event.clientY);
  return target && target.classList && target.classList.contains("handle") ? target : null;
}

function onDoubleClick(event) {
  const target = pointUnder(event);
  if (!target) return;
  if (state.mode === "draw") return;
  const c = Number(target.getAttribute("data-c"));
  const v = Number(target.getAttribute("data-v"));
  // A double-click on an edge first inserts a point there: keep it rather than remove it.
  const recent = state.lastInserted;
  if (recent && recent.c === c && recent.v === v && Date.now() - recent.time < 700) return;
  if (removeVertex(c, v)) { renderOverlay(); renderList(); }
}

function onContextMenu(event) {
  const target = pointUnder(event);
  if (!target || state.mode === "draw") return;
  event.preventDefault();
  const c = Number(target.getAttribute("data-c"));
  if (removeVertex(c, Number(target.getAttribute("data-v")))) { renderOverlay(); renderList(); }
}

const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

function onHandleKey(event) {
  const target = event.target;
  if (!target.classList || !target.classList.contains("handle")) return;
  const c = Number(target.getAttribute("data-c"));
  const v = Number(target.getAttribute("data-v"));
  const points = state.compartments[c].points;
  if (event.key in ARROWS) {
    event.preventDefault();
    const [dx, dy] = ARROWS[event.key].map((d) => d * (event.shiftKey ? 10 : 1));
    points[v] = [round1(clampX(points[v][0] + dx)), round1(clampY(points[v][1] + dy))];
    select(c);
    markDirty(true);
    updateCompartment(c);
  } else if (event.key === "Delete" || event.key === "Backspace") {
    event.preventDefault();
    if (!removeVertex(c, v)) return;
    renderOverlay();
    renderList();
    const next = $("layout-overlay").querySelector(
      `circle.handle[data-c="${c}"][data-v="${Math.min(v, points.length - 1)}"]`);
    if (next) next.focus();
  }
}

function onDocumentKey(event) {
  if (state.mode !== "draw") return;
  if (event.key === "Enter") { event.preventDefault(); finishDraft(); }
  else if (event.key === "Escape") {
    event.preventDefault();
    cancelDraft();
    renderOverlay();
    updateButtons();
    setStatus("Drawing cancelled.");
  }
}
