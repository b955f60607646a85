// Shared by the dashboard (/dashboard) and canteen (/canteen) pages: the API key, calls to the
// service, and charts. Charts are drawn by Chart.js (MIT), vendored at build time into
// /static/vendor by scripts/vendor-js.sh: nothing is fetched from elsewhere at run time.
// Every chart writes the numbers it draws on its <figure> (data-values, JSON) and into a table
// under it, so a reader without the picture (or a test) gets the same figures.
"use strict";

const TrayCharts = (() => {
  // common.js: the key (the analysis page's, shared), the status and error lines.
  const {
    KEY_STORAGE, $, setStatus, showError, clearError, apiKey: key,
  } = TrayCommon;
  // Okabe-Ito: told apart with the common colour-vision deficiencies.
  const COLOURS = {
    blue: "#0072B2", orange: "#E69F00", green: "#009E73", pink: "#CC79A7",
    red: "#D55E00", sky: "#56B4E9", grey: "#6b7280", yellow: "#F0E442",
  };
  const charts = new Map();

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== undefined && value !== null) node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function fmt(value, digits = 1) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
  }

  // ---- key, state of the page, errors -----------------------------------------------

  // As on the analysis page: a #key=… fragment is stored and removed from the address bar;
  // other fragment parameters (user, week, canteen, …) are returned for the page to use.
  function readFragment() {
    const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    if (params.has("key")) localStorage.setItem(KEY_STORAGE, params.get("key"));
    if ([...params.keys()].length) {
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    const input = $("api-key");
    input.value = localStorage.getItem(KEY_STORAGE) || "";
    input.addEventListener("change", () => localStorage.setItem(KEY_STORAGE, input.value.trim()));
    return params;
  }

  function setState(name) { document.body.setAttribute("data-state", name); }

  function describe(status, body) {
    let detail = body && typeof body === "object" && body.detail !== undefined ? body.detail : body;
    if (Array.isArray(detail)) {
      detail = detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
    } else if (detail && typeof detail === "object") {
      detail = detail.message || JSON.stringify(detail);
    }
    const hint = status === 401 || status === 403 ? " Check the API key." : "";
    return `HTTP ${status}: ${detail || "no explanation given"}.${hint}`;
  }

  async function api(path) {
    if (!key()) throw new Error("Enter an API key first (ask the service's administrator for one).");
    const answer = await fetch(path, { headers: { Authorization: `Bearer ${key()}` } });
    let body = null;
    try { body = await answer.json(); } catch (err) { body = null; }
    if (!answer.ok) throw new Error(`${path.split("?")[0]} — ${describe(answer.status, body)}`);
    return body;
  }

  // ---- charts -----------------------------------------------------------------------

  // spec: {labels, series: [{key, label, data, unit, type: "bar"|"line", colour, axis,
  //        dashed, colours}], horizontal, y: {title, min, max, integer}, y2: {title, min, max},
  //        height, labelTitle, emptyText}
  // A figure: <figure id=… class="chart"><figcaption/><div class="chart-box"><canvas/></div>
  // <details class="chart-numbers"><summary>Numbers</summary><div class="table-scroll">…
  function draw(figureId, spec) {
    const figure = $(figureId);
    const box = figure.querySelector(".chart-box");
    const canvas = figure.querySelector("canvas");
    if (charts.has(figureId)) { charts.get(figureId).destroy(); charts.delete(figureId); }
    const empty = !spec.labels.length || spec.series.every((s) => s.data.every((v) => v === null));
    figure.dataset.values = JSON.stringify({
      labels: spec.labels,
      series: spec.series.map((s) => ({ key: s.key, label: s.label, unit: s.unit || "", data: s.data })),
    });
    figure.dataset.empty = empty ? "true" : "false";
    figure.querySelector(".chart-empty")?.remove();
    if (empty) {
      box.hidden = true;
      figure.querySelector(".chart-numbers").hidden = true;
      figure.append(el("p", { class: "chart-empty help" }, spec.emptyText || "Nothing logged for this period."));
      return null;
    }
    box.hidden = false;
    figure.querySelector(".chart-numbers").hidden = false;
    if (spec.height) box.style.height = `${spec.height}px`;
    const index = spec.horizontal ? "y" : "x";
    const value = spec.horizontal ? "x" : "y";
    const datasets = spec.series.map((s, i) => {
      const colour = s.colour || Object.values(COLOURS)[i % 8];
      const line = s.type === "line";
      return {
        type: s.type || "bar", label: s.label, data: s.data,
        backgroundColor: s.colours || (line ? colour : `${colour}cc`),
        borderColor: colour, borderWidth: line ? 2 : 1, borderDash: s.dashed ? [6, 4] : [],
        pointRadius: line && !s.dashed ? 3.5 : 0, pointHoverRadius: 5, spanGaps: false,
        [`${value}AxisID`]: s.axis === "y2" ? "y2" : value, order: line ? 0 : 1,
      };
    });
    const scales = {
      [index]: { ticks: { autoSkip: true, maxRotation: 50 }, grid: { display: false } },
      [value]: {
        beginAtZero: true, min: spec.y?.min, max: spec.y?.max,
        ticks: { precision: spec.y?.integer ? 0 : undefined },
        title: { display: Boolean(spec.y?.title), text: spec.y?.title },
      },
    };
    if (spec.series.some((s) => s.axis === "y2")) {
      scales.y2 = {
        position: "right", beginAtZero: true, min: spec.y2?.min, max: spec.y2?.max,
        grid: { drawOnChartArea: false }, title: { display: Boolean(spec.y2?.title), text: spec.y2?.title },
      };
    }
    const chart = new window.Chart(canvas, {
      data: { labels: spec.labels, datasets },
      options: {
        indexAxis: index, responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "nearest", intersect: false, axis: index },
        plugins: {
          legend: { display: spec.series.length > 1, position: "bottom", labels: { boxWidth: 14 } },
          tooltip: {
            callbacks: {
              label: (ctx) => {
                const s = spec.series[ctx.datasetIndex];
                return `${s.label}: ${fmt(ctx.raw)} ${s.unit || ""}`.trim();
              },
            },
          },
        },
        scales,
      },
    });
    charts.set(figureId, chart);
    fillTable(figure, spec);
    return chart;
  }

  function fillTable(figure, spec) {
    const table = figure.querySelector(".chart-numbers table");
    table.replaceChildren();
    const head = el("tr", {}, el("th", { scope: "col" }, spec.labelTitle || ""),
      ...spec.series.map((s) => el("th", { scope: "col", class: "num" }, s.unit ? `${s.label}, ${s.unit}` : s.label)));
    const body = el("tbody");
    spec.labels.forEach((label, i) => {
      body.append(el("tr", {}, el("th", { scope: "row" }, String(label)),
        ...spec.series.map((s) => el("td", { class: "num" }, fmt(s.data[i])))));
    });
    table.append(el("thead", {}, head), body);
  }

  return { $, el, fmt, readFragment, key, setState, setStatus, showError, clearError, api, draw, COLOURS };
})();
