// TrayLens page: sends a photo to POST /v1/analyze and draws the answer over it.
// Plain JavaScript, no libraries: the page must work on a kiosk without internet.
"use strict";

// common.js: element helpers, the status and error lines, the API key, the items' hues.
const { KEY_STORAGE, PALETTE, $, el, svgEl, setStatus, clearError, onDroppedFile } = TrayCommon;
const MENU_STORAGE = "traylens.menuId";
// Nutrients shown per item in the table; the totals list every nutrient the answer has.
const ITEM_NUTRIENTS = ["energy_kcal", "protein_g", "fat_g", "carbohydrate_g", "sodium_mg"];
// The items table's column headings, as the stacked (narrow screen) rows label their cells.
const ITEM_COLUMNS = ["", "", "Confidence", "Grams", "Nutrients", "Alternatives"];

const state = {
  file: null, fileName: "", nutrients: new Map(), namesReady: null, photoUrl: null,
  overlayUrl: null, requestCount: 0,
  result: null, size: null, menu: null, // the shown analysis, its photo size, its menu
};
// An item the service could not name (model.infer.menu_match.UNIDENTIFIED).
const UNIDENTIFIED = "unidentified";

function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function nutrientInfo(key) {
  return state.nutrients.get(key) || { key, unit: "", name_en: key, name_ko: "" };
}

function formatNutrient(key, value) {
  const unit = nutrientInfo(key).unit;
  const digits = unit === "kcal" || unit === "mg" || Math.abs(value) >= 100 ? 0 : 1;
  return `${formatNumber(value, digits)} ${unit}`.trim();
}

// ---- messages ---------------------------------------------------------------------

function showError(text) {
  TrayCommon.showError(text);
  setStatus("");
}

// FastAPI answers {"detail": "..."} or, for validation errors, {"detail": [{loc, msg}, ...]}.
function describeApiError(status, body) {
  const detail = body && body.detail !== undefined ? body.detail : body;
  let text;
  if (Array.isArray(detail)) {
    text = detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
  } else if (detail && typeof detail === "object") {
    text = detail.message || JSON.stringify(detail);
  } else {
    text = detail ? String(detail) : "no explanation given";
  }
  const hint = status === 401 || status === 403 ? " Check the API key." : "";
  return `The service refused the photo (HTTP ${status}): ${text}.${hint}`;
}

// ---- inputs -----------------------------------------------------------------------

function readFragment() { TrayCommon.readFragment({ menu: MENU_STORAGE }); }

function restoreInputs() {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  selectMenu(localStorage.getItem(MENU_STORAGE) || "");
  $("api-key").addEventListener("change", (e) => {
    localStorage.setItem(KEY_STORAGE, e.target.value.trim());
    loadMenus();
  });
  $("menu-id").addEventListener("change", (e) => localStorage.setItem(MENU_STORAGE, e.target.value));
  // Menus made since the page opened show up when the picker is next used.
  $("menu-id").addEventListener("focus", () => loadMenus());
}

// ---- the menu picker: the canteen's menus (GET /v1/menus), or none ----------------

function menuLabel(menu) {
  const dishes = (menu.dishes || []).map((d) => d.name || (d.names || {}).ko || (d.names || {}).en || d.food_id);
  const what = menu.name || dishes.slice(0, 3).join(", ") + (dishes.length > 3 ? ", …" : "");
  return [menu.date, menu.meal, what].filter(Boolean).join(" · ");
}

// Selects a menu by id; one the list does not hold (a link's #menu=…) gets its own option.
function selectMenu(menuId) {
  const select = $("menu-id");
  if (menuId && ![...select.options].some((o) => o.value === menuId)) {
    select.append(el("option", { value: menuId }, `Menu ${menuId}`));
  }
  select.value = menuId;
}

async function loadMenus() {
  const key = $("api-key").value.trim();
  if (!key) return;
  let menus;
  try {
    const answer = await fetch("/v1/menus", { headers: { Authorization: `Bearer ${key}` } });
    if (!answer.ok) return; // a wrong key is reported when a photo is sent
    menus = await answer.json();
  } catch (err) {
    return; // the picker keeps what it had; "No menu" always works
  }
  const select = $("menu-id");
  const ids = menus.map((m) => m.id).join();
  if (select.getAttribute("data-menus") === ids) return; // unchanged: leave an open picker be
  const chosen = select.value || localStorage.getItem(MENU_STORAGE) || "";
  // Newest day first; within a day the service's order (breakfast, lunch, dinner).
  const sorted = [...menus].sort((a, b) => (a.date < b.date ? 1 : a.date > b.date ? -1 : 0));
  select.replaceChildren(el("option", { value: "" }, "No menu"),
    ...sorted.map((m) => el("option", { value: m.id, "data-date": m.date, "data-meal": m.meal }, menuLabel(m))));
  select.setAttribute("data-menus", ids);
  selectMenu(chosen);
}

function chooseFile(file, name) {
  state.file = file;
  state.fileName = name || file.name || "photo";
  $("analyze-button").disabled = false;
  analyze();
}

function setUpDropZone() {
  const zone = $("drop-zone");
  $("photo-input").addEventListener("change", (e) => {
    if (e.target.files.length) chooseFile(e.target.files[0]);
  });
  onDroppedFile(zone, (file) => chooseFile(file));
}

async function loadSamples() {
  const list = $("sample-list");
  let samples = [];
  try {
    const answer = await fetch("/samples");
    if (answer.ok) samples = await answer.json();
  } catch (err) {
    setStatus(`Sample photos are unavailable: ${err}`);
  }
  for (const sample of samples) {
    const button = el("button", { type: "button", "data-sample": sample.file },
      el("img", { src: sample.url, alt: "" }), el("span", {}, sample.title));
    button.addEventListener("click", () => pickSample(sample));
    list.append(el("li", {}, button));
  }
}

async function pickSample(sample) {
  clearError();
  setStatus(`Loading sample “${sample.title}”…`);
  const answer = await fetch(sample.url);
  if (!answer.ok) { showError(`Could not load the sample photo (HTTP ${answer.status}).`); return; }
  const blob = await answer.blob();
  chooseFile(new File([blob], sample.file, { type: blob.type }), sample.file);
}

async function loadNutrientNames() {
  try {
    const answer = await fetch("/page/nutrients");
    if (!answer.ok) return;
    for (const n of await answer.json()) state.nutrients.set(n.key, n);
  } catch (err) {
    // Without names the page still works: it shows the keys.
  }
}

// ---- the request ------------------------------------------------------------------

async function analyze() {
  clearError();
  const key = $("api-key").value.trim();
  if (!key) { showError("Enter an API key first (ask the service's administrator for one)."); $("api-key").focus(); return; }
  if (!state.file) { showError("Choose a photo or a sample first."); return; }
  localStorage.setItem(KEY_STORAGE, key);
  const form = new FormData();
  form.append("image", state.file, state.fileName);
  const menuId = $("menu-id").value;
  if (menuId) form.append("menu_id", menuId);

  setStatus(`Analysing ${state.fileName}…`);
  $("analyze-button").disabled = true;
  document.body.setAttribute("data-state", "busy");
  // A newer request (another photo picked meanwhile) wins: older answers are dropped.
  const request = ++state.requestCount;
  let answer;
  try {
    answer = await fetch("/v1/analyze", {
      method: "POST", body: form, headers: { Authorization: `Bearer ${key}` },
    });
  } catch (err) {
    if (request === state.requestCount) fail(`The service could not be reached: ${err.message || err}`);
    return;
  }
  const body = await answer.json().catch(() => null);
  if (request !== state.requestCount) return;
  if (!answer.ok) { fail(describeApiError(answer.status, body)); return; }
  try {
    await showResult(body);
    $("analyze-button").textContent = "Analyze again"; // the same photo, e.g. after teaching
    document.body.setAttribute("data-state", "done");
  } catch (err) {
    fail(`The answer could not be shown: ${err.message || err}`);
  } finally {
    $("analyze-button").disabled = false;
  }
}

function fail(message) {
  $("result").hidden = true;
  showError(message);
  $("analyze-button").disabled = false;
  document.body.setAttribute("data-state", "error");
}

// ---- the answer -------------------------------------------------------------------

// The answer's shape is serve.analyses.analysis_payload (docs/API.md).
// main: what the item is called (a menu dish by its own name, e.g. Korean); sub: a second
// name (the food's English or Korean name) when it says something more.
function itemName(item) {
  const names = item.names || {};
  if (item.label === UNIDENTIFIED && !item.food_id) return { main: "Unidentified food", sub: "" };
  if (item.menu_dish_id) {
    const sub = [names.en, names.ko].find((n) => n && n !== item.label) || "";
    return { main: item.label, sub };
  }
  return { main: names.en || names.ko || item.label, sub: names.en ? names.ko || "" : "" };
}

function formatGrams(item) {
  const grams = item.grams;
  if (!grams) return "–";
  const main = `${formatNumber(grams.value)} g`;
  if (grams.low === null || grams.high === null || grams.low === grams.high) return main;
  return `${main} (${formatNumber(grams.low)}–${formatNumber(grams.high)})`;
}

function words(value) { return String(value).replace(/_/g, " "); }

function loadPhoto(url) {
  return new Promise((resolve, reject) => {
    const img = $("photo");
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this photo"));
    img.src = url;
  });
}

async function showResult(result) {
  await state.namesReady;
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(state.file);
  $("result").hidden = false;
  const img = await loadPhoto(state.photoUrl);
  // The answer's coordinates are in the (EXIF-rotated) photo's pixels, as the browser shows it.
  const width = result.image.width || img.naturalWidth;
  const height = result.image.height || img.naturalHeight;
  state.size = { width, height };
  renderResult(result);
  const items = result.items;
  const review = items.filter((i) => i.needs_review).length;
  if (result.no_food_found) {
    setStatus(`No food found in ${state.fileName}.`);
    return;
  }
  setStatus(`Found ${items.length} food${items.length === 1 ? "" : "s"} in ${state.fileName}`
    + (review ? `; ${review} need${review === 1 ? "s" : ""} review.` : "."));
}

function renderResult(result) {
  state.result = result;
  $("dish-picker").hidden = true;
  const items = result.items;
  drawOverlay(items, state.size.width, state.size.height);
  fillItems(items, Boolean(result.menu_id));
  fillTotals(result.totals);
  showNoFood(result);
  describeResult(result, items);
}

// A photo without food: the service's words instead of an empty table and totals of 0
// (answers of an older service lack no_food_found: no items means the same).
function showNoFood(result) {
  const none = result.no_food_found ?? !result.items.length;
  $("no-food").hidden = !none;
  $("no-food-message").textContent = none ? (result.message || "Nothing on this photo was found to be food.") : "";
  $("items-table").hidden = none;
  document.querySelector(".totals-block").hidden = none;
}

function shapePoints(item) {
  const poly = item.polygon;
  if (Array.isArray(poly) && poly.length >= 3 && Array.isArray(poly[0])) {
    return poly.map(([x, y]) => `${x},${y}`).join(" ");
  }
  const [x1, y1, x2, y2] = item.box;
  return `${x1},${y1} ${x2},${y1} ${x2},${y2} ${x1},${y2}`;
}

// Tags stay short on the photo; the table gives the full name.
function shortName(name, limit = 26) {
  return name.length > limit ? `${name.slice(0, limit - 1).trimEnd()}…` : name;
}

function tagText(item) {
  const nutrients = item.nutrients || {};
  const kcal = nutrients.energy_kcal;
  const parts = [shortName(itemName(item).main)];
  if (item.grams) parts.push(formatGrams(item));
  if (kcal !== null && kcal !== undefined) parts.push(`${formatNumber(kcal)} kcal`);
  return parts.join(" · ");
}

function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

// Above the box (inside it at the photo's top edge); moved down past tags already placed.
function placeTag(box, size, placed, width, height) {
  const [x1, y1] = box;
  const x = Math.min(Math.max(0, x1), Math.max(0, width - size.w));
  let y = y1 - size.h - 2 >= 0 ? y1 - size.h - 2 : y1 + 2;
  for (let tries = 0; tries < 12 && placed.some((p) => overlaps(p, { x, y, ...size })); tries += 1) {
    y = Math.min(y + size.h + 2, height - size.h);
  }
  return { x, y, ...size };
}

function drawTag(svg, item, index, size, colour, placed) {
  const fontSize = Math.max(12, Math.round(size.width / 55));
  const text = svgEl("text", { x: 0, y: 0, "font-size": fontSize });
  text.textContent = tagText(item);
  const rect = svgEl("rect", { class: "tag-bg", fill: colour });
  const group = svgEl("g", { "data-item": index });
  group.append(rect, text);
  svg.append(group);
  // The text's width is known only once it is in the document.
  const spot = placeTag(item.box, { w: text.getBBox().width + fontSize * 0.6, h: fontSize * 1.35 },
    placed, size.width, size.height);
  placed.push(spot);
  for (const [name, value] of Object.entries({ x: spot.x, y: spot.y, width: spot.w, height: spot.h })) {
    rect.setAttribute(name, value);
  }
  text.setAttribute("x", spot.x + fontSize * 0.3);
  text.setAttribute("y", spot.y + fontSize);
}

function drawOverlay(items, width, height) {
  const svg = $("overlay");
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  items.forEach((item, index) => {
    const colour = PALETTE[index % PALETTE.length];
    const shape = svgEl("polygon", {
      class: "shape", points: shapePoints(item), fill: colour, "fill-opacity": 0.35,
      stroke: colour, "data-item": index,
    });
    svg.append(shape);
  });
  // Tags after all shapes so no mask covers a label.
  const placed = [];
  items.forEach((item, index) => drawTag(svg, item, index, { width, height },
    PALETTE[index % PALETTE.length], placed));
}

function alternativesList(item) {
  const alts = (item.alternatives || [])
    .filter((a) => a.food_id !== item.food_id || a.label !== item.label).slice(0, 3);
  if (!alts.length) return "–";
  const list = el("ul", { class: "alts" });
  for (const alt of alts) {
    const name = words(alt.label || alt.food_id || alt.dish_id);
    list.append(el("li", {}, `${name} ${formatNumber(100 * alt.score)}%`));
  }
  return list;
}

function itemNutrientCell(item) {
  const nutrients = item.nutrients || {};
  const cell = el("td", {});
  for (const key of ITEM_NUTRIENTS) {
    if (!(key in nutrients)) continue;
    const line = `${nutrientInfo(key).name_en}: ${formatNutrient(key, nutrients[key])}`;
    cell.append(el("div", { class: "nutrient-line" }, line));
  }
  return cell;
}

// Set through CSSOM: the page's CSP forbids inline style attributes.
function swatch(colour) {
  const node = el("span", { class: "swatch" });
  node.style.background = colour;
  return node;
}

const HANGUL = /[\uac00-\ud7a3]/;

function langOf(text) { return HANGUL.test(text) ? { lang: "ko" } : {}; }

function confidenceCell(item) {
  const cell = el("td", { class: "num" }, `${formatNumber(100 * item.confidence)}%`);
  if (item.needs_review) cell.append(el("span", { class: "review" }, "needs review"));
  return cell;
}

// With a menu, a click on an item (row or shape) asks which dish it is (pickDish).
function fillItems(items, pickable) {
  const body = $("items-body");
  body.replaceChildren();
  $("pick-help").hidden = !pickable || !items.length;
  items.forEach((item, index) => {
    const name = itemName(item);
    const foodCell = el("td", {}, el("span", { class: "name-main", ...langOf(name.main) }, name.main));
    if (name.sub) foodCell.append(el("span", { class: "name-ko", ...langOf(name.sub) }, name.sub));
    foodCell.append(el("span", { class: "prov" }, provenanceText(item)));
    const cells = [el("td", { class: "swatch-cell" }, swatch(PALETTE[index % PALETTE.length])),
      foodCell, confidenceCell(item), el("td", { class: "num nowrap" }, formatGrams(item)),
      itemNutrientCell(item), el("td", {}, alternativesList(item))];
    // Narrow screens stack each row as a card: each cell says what it is (style.css).
    ITEM_COLUMNS.forEach((label, n) => { if (label) cells[n].setAttribute("data-label", label); });
    const row = el("tr", { "data-item": index }, ...cells);
    if (item.needs_review) row.classList.add("needs-review");
    row.addEventListener("mouseenter", () => highlight(index, true));
    row.addEventListener("mouseleave", () => highlight(index, false));
    if (pickable) {
      row.classList.add("pickable");
      row.setAttribute("tabindex", "0");
      row.setAttribute("title", "Click to say which dish this is");
      row.addEventListener("click", () => openPicker(index));
      row.addEventListener("keydown", (e) => { if (e.key === "Enter") openPicker(index); });
    }
    body.append(row);
  });
  if (!items.length) body.append(el("tr", {}, el("td", { colspan: "6" }, "No food was found in this photo.")));
}

// ---- teaching the menu: pick the dish of an item ----------------------------------

function authHeaders() { return { Authorization: `Bearer ${$("api-key").value.trim()}` }; }

async function loadMenu(menuId) {
  if (state.menu && state.menu.id === menuId) return state.menu;
  const answer = await fetch(`/v1/menus/${encodeURIComponent(menuId)}`, { headers: authHeaders() });
  const body = await answer.json().catch(() => null);
  if (!answer.ok) throw new Error(describeApiError(answer.status, body));
  state.menu = body;
  return body;
}

function dishNames(dish) {
  const names = dish.names || {};
  const main = dish.name || names.ko || names.en || dish.food_id;
  const other = [names.en, names.ko].find((n) => n && n !== main) || "";
  return { main, other };
}

async function openPicker(index) {
  const result = state.result;
  if (!result || !result.menu_id) return;
  let menu;
  try {
    menu = await loadMenu(result.menu_id);
  } catch (err) {
    showError(err.message || String(err));
    return;
  }
  const item = result.items[index];
  // The service's ranking first: the likeliest dish is the first button.
  const scores = new Map((item.alternatives || []).map((a) => [a.dish_id, a.score]));
  const dishes = [...menu.dishes].sort((a, b) => (scores.get(b.id) || 0) - (scores.get(a.id) || 0));
  const list = $("picker-list");
  list.replaceChildren();
  for (const dish of dishes) {
    const names = dishNames(dish);
    const button = el("button", { type: "button", class: "dish-choice", "data-dish": dish.id },
      el("span", { class: "dish-main", ...langOf(names.main) }, names.main),
      el("span", { class: "dish-other", ...langOf(names.other) }, names.other));
    if (dish.id === item.menu_dish_id) button.classList.add("current");
    button.addEventListener("click", () => pickDish(index, dish));
    list.append(el("li", {}, button));
  }
  $("picker-item").textContent = `Item ${index + 1}, now “${itemName(item).main}” `
    + `(${formatNumber(100 * item.confidence)}% sure). The dish you pick is also enrolled as an example for the next photos.`;
  $("picker-item").setAttribute("data-item", index);
  $("dish-picker").hidden = false;
  list.querySelector("button").focus();
}

async function pickDish(index, dish) {
  const result = state.result;
  const item = result.items[index];
  clearError();
  setStatus(`Saving ${dishNames(dish).main}…`);
  let answer;
  try {
    answer = await fetch(`/v1/analyses/${encodeURIComponent(result.id)}/items/${encodeURIComponent(item.id)}`, {
      method: "PATCH", headers: { ...authHeaders(), "Content-Type": "application/json" },
      body: JSON.stringify({ menu_dish_id: dish.id }),
    });
  } catch (err) {
    showError(`The service could not be reached: ${err.message || err}`);
    return;
  }
  const body = await answer.json().catch(() => null);
  if (!answer.ok) { showError(describeApiError(answer.status, body)); return; }
  state.menu = null; // its enrolments changed
  renderResult(body);
  const name = dishNames(dish).main;
  setStatus(body.enrolment
    ? `Saved: item ${index + 1} is ${name}, enrolled as an example: the next photo uses it.`
    : `Saved: item ${index + 1} is ${name}.`);
  document.body.setAttribute("data-state", "corrected");
}

function provenanceText(item) {
  const prov = item.provenance || {};
  const by = { menu: "from the menu", user: "corrected" }[item.identified_by] || "by the model";
  const evidence = { embedding: "enrolled examples", class_scores: "model classes" }[item.evidence];
  const parts = [evidence && item.identified_by !== "user" ? `${by} (${evidence})` : by];
  if (prov.grams) parts.push(`grams: ${words(prov.grams)}`);
  if (!item.nutrients) parts.push("no nutrient data");
  return parts.join(" · ");
}

function highlight(index, on) {
  document.querySelectorAll(`[data-item="${index}"]`).forEach((node) => node.classList.toggle("active", on));
}

// Totals flagged incomplete miss some item's value: shown as lower bounds ("≥").
function fillTotals(totals) {
  const values = totals.nutrients || {};
  const incomplete = new Set(totals.incomplete_nutrients || []);
  const body = $("totals-body");
  body.replaceChildren();
  const known = [...state.nutrients.keys()].filter((key) => key in values);
  const keys = known.length ? known : Object.keys(values);
  body.append(el("tr", { "data-nutrient": "grams" }, el("th", { scope: "row" }, "Food weight"),
    el("td", { class: "num" }, `${formatNumber(totals.grams)} g`)));
  let lowerBounds = 0;
  for (const key of keys) {
    if (typeof values[key] !== "number") continue;
    if (incomplete.has(key)) lowerBounds += 1;
    const amount = `${incomplete.has(key) ? "≥ " : ""}${formatNutrient(key, values[key])}`;
    body.append(el("tr", { "data-nutrient": key },
      el("th", { scope: "row" }, nutrientInfo(key).name_en), el("td", { class: "num" }, amount)));
  }
  const note = $("totals-note");
  note.hidden = lowerBounds === 0;
  note.textContent = totals.items_without_nutrients
    ? `${totals.items_without_nutrients} item(s) without nutrient data: totals marked ≥ are lower bounds.`
    : "Totals marked ≥ lack some item's value: they are lower bounds.";
}

function describeResult(result, items) {
  const shown = `${items.length} food${items.length === 1 ? "" : "s"}`;
  $("photo-caption").textContent = result.no_food_found
    ? `${state.fileName}: no food found.`
    : `${state.fileName}: ${shown}. Shapes show where each food was found; tags give grams and energy.`;
  const meta = [];
  if (result.id) meta.push(`Analysis ${result.id}`);
  if (result.model_version) meta.push(`model ${result.model_version}`);
  if (result.scale && result.scale.source) meta.push(`scale from ${words(result.scale.source)}`);
  $("result-meta").textContent = meta.join(" · ");
  state.overlayUrl = result.overlay_url;
  $("overlay-button").hidden = !result.overlay_url;
}

// The overlay PNG needs the API key, so it is fetched here and opened as a blob.
async function openOverlayImage() {
  const answer = await fetch(state.overlayUrl, {
    headers: { Authorization: `Bearer ${$("api-key").value.trim()}` },
  });
  if (!answer.ok) {
    showError(describeApiError(answer.status, await answer.json().catch(() => null)));
    return;
  }
  const link = el("a", { href: URL.createObjectURL(await answer.blob()), download: "traylens-overlay.png" });
  link.click();
}

// ---- start ------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  readFragment();
  restoreInputs();
  setUpDropZone();
  $("analyze-form").addEventListener("submit", (e) => { e.preventDefault(); analyze(); });
  $("overlay-button").addEventListener("click", openOverlayImage);
  $("picker-close").addEventListener("click", () => { $("dish-picker").hidden = true; });
  state.namesReady = loadNutrientNames();
  loadSamples();
  loadMenus();
});
