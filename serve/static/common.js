// Shared by every page (loaded before the page's own scripts): element lookup and building,
// the status and error lines, the API key (kept in localStorage, taken from a #key=… link).
// Plain JavaScript, no libraries: the pages must work on a kiosk without internet.
"use strict";

const TrayCommon = (() => {
  const KEY_STORAGE = "traylens.apiKey";
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Distinct, colour-blind-friendly hues (Okabe–Ito, then Tol's bright).
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9",
    "#AA3377", "#228833", "#4477AA", "#EE6677", "#66CCEE", "#CCBB44"];

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function svgEl(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  // ---- messages -------------------------------------------------------------------

  function setStatus(text) { $("status").textContent = text; }

  function showError(text) {
    const box = $("error");
    box.textContent = text;
    box.hidden = false;
  }

  function clearError() { $("error").hidden = true; $("error").textContent = ""; }

  // A file dropped on the zone goes to onFile (the zone is marked "dragging" meanwhile).
  function onDroppedFile(zone, onFile) {
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("dragging");
      if (e.dataTransfer.files.length) onFile(e.dataTransfer.files[0]);
    });
  }

  // ---- the API key ----------------------------------------------------------------

  function apiKey() { return $("api-key").value.trim(); }

  // Stores #key=… and the page's own fragment parameters (name -> localStorage key), then,
  // when any of them was there, keeps the key out of the address bar, history and
  // screenshots.
  function readFragment(stored = {}) {
    const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    const names = { key: KEY_STORAGE, ...stored };
    for (const [name, storage] of Object.entries(names)) {
      if (params.has(name)) localStorage.setItem(storage, params.get(name));
    }
    if (Object.keys(names).some((name) => params.has(name))) {
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return params;
  }

  return { KEY_STORAGE, SVG_NS, PALETTE, $, el, svgEl, setStatus, showError, clearError,
    onDroppedFile, apiKey, readFragment };
})();
