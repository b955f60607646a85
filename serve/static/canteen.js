// TrayLens canteen page: waste by dish (GET /v1/canteens/{id}/waste) and by day with
// participation (GET /v1/canteens/{id}/waste/daily), drawn with Chart.js through charts.js.
// A link may carry #key=…&canteen=…&start=2026-11-01&end=2026-11-30.
"use strict";

(() => {
  const { $, el, fmt, api, draw, COLOURS } = TrayCharts;
  const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

  const isoDate = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  const dishName = (d) => d.name_ko || d.name_en || d.food_id || d.key.replace(/^label:/, "");
  const dayLabel = (iso) => `${WEEKDAYS[new Date(`${iso}T12:00:00Z`).getUTCDay()]} ${iso.slice(5)}`;

  async function loadCanteens(wanted) {
    const select = $("canteen-select");
    select.disabled = true;
    const canteens = await api("/v1/canteens");
    select.replaceChildren();
    if (!canteens.length) select.append(el("option", { value: "" }, "This key sees no canteen"));
    for (const c of canteens) select.append(el("option", { value: c.id }, c.name || c.id));
    if (wanted && canteens.some((c) => c.id === wanted)) select.value = wanted;
    select.disabled = !canteens.length;
    return canteens.length > 0;
  }

  function summary(byDish, daily) {
    const items = [
      ["Trays (before/after)", fmt(daily.trays, 0)], ["Served", `${fmt(daily.served_g, 0)} g`],
      ["Eaten", `${fmt(daily.eaten_g, 0)} g`], ["Left", `${fmt(daily.leftover_g, 0)} g`],
      ["Left, % of served", `${fmt(daily.leftover_pct)} %`], ["People of the canteen", fmt(daily.users, 0)],
      ["Diners per day (days open)", fmt(daily.mean_diners_per_day)], ["Dishes", fmt(byDish.dishes.length, 0)],
    ];
    $("summary").replaceChildren(...items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  }

  function drawDishes(report) {
    const dishes = report.dishes;
    const labels = dishes.map(dishName);
    const height = 50 + 30 * dishes.length;
    draw("chart-waste-dish", {
      labels, horizontal: true, height, labelTitle: "Dish", y: { title: "g" },
      series: [{ key: "leftover_g", label: "Left", unit: "g", data: dishes.map((d) => d.leftover_g), colour: COLOURS.red }],
      emptyText: "No before/after trays in these dates.",
    });
    draw("chart-served-eaten", {
      labels, horizontal: true, height: 60 + 44 * dishes.length, labelTitle: "Dish", y: { title: "g" },
      series: [
        { key: "served_g", label: "Served", unit: "g", data: dishes.map((d) => d.served_g), colour: COLOURS.sky },
        { key: "eaten_g", label: "Eaten", unit: "g", data: dishes.map((d) => d.eaten_g), colour: COLOURS.green },
      ],
      emptyText: "No before/after trays in these dates.",
    });
  }

  function drawDays(daily) {
    const labels = daily.days.map((d) => dayLabel(d.date));
    draw("chart-waste-day", {
      labels, labelTitle: "Day", y: { title: "g left" }, y2: { title: "% of served", min: 0 },
      series: [
        { key: "leftover_g", label: "Left", unit: "g", data: daily.days.map((d) => d.leftover_g), colour: COLOURS.red },
        { key: "leftover_pct", label: "Left, % of served", unit: "%", type: "line", axis: "y2", data: daily.days.map((d) => d.leftover_pct), colour: COLOURS.grey },
      ],
    });
    draw("chart-participation", {
      labels, labelTitle: "Day", y: { title: "diners", integer: true }, y2: { title: "% of people", min: 0 },
      series: [
        { key: "diners", label: "Diners", unit: "", data: daily.days.map((d) => d.diners), colour: COLOURS.blue },
        { key: "participation_pct", label: "Participation", unit: "%", type: "line", axis: "y2", data: daily.days.map((d) => d.participation_pct), colour: COLOURS.orange },
      ],
    });
  }

  async function load() {
    const canteen = $("canteen-select").value;
    const start = $("start-input").value;
    const end = $("end-input").value;
    if (!canteen || !start || !end) { TrayCharts.showError("Choose a canteen and the dates."); TrayCharts.setState("error"); return; }
    TrayCharts.clearError();
    TrayCharts.setState("busy");
    TrayCharts.setStatus("Loading…");
    try {
      const q = `start=${start}&end=${end}`;
      const base = `/v1/canteens/${encodeURIComponent(canteen)}/waste`;
      const [byDish, daily] = await Promise.all([api(`${base}?${q}`), api(`${base}/daily?${q}`)]);
      $("report").hidden = false;
      summary(byDish, daily);
      drawDishes(byDish);
      drawDays(daily);
      TrayCharts.setStatus(`${start} – ${end}: ${daily.trays} trays.`);
      TrayCharts.setState("ready");
    } catch (err) {
      TrayCharts.showError(String(err.message || err));
      TrayCharts.setStatus("");
      TrayCharts.setState("error");
    }
  }

  async function startPage() {
    const params = TrayCharts.readFragment();
    const today = new Date();
    const monthAgo = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 27);
    $("end-input").value = params.get("end") || isoDate(today);
    $("start-input").value = params.get("start") || isoDate(monthAgo);
    $("controls").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    const reload = async () => {
      TrayCharts.clearError();
      try { await loadCanteens($("canteen-select").value); TrayCharts.setState("idle"); } catch (err) {
        TrayCharts.showError(String(err.message || err)); TrayCharts.setState("error");
      }
    };
    $("reload-canteens").addEventListener("click", reload);
    $("api-key").addEventListener("change", reload);
    if (!TrayCharts.key()) { TrayCharts.setState("idle"); return; }
    try {
      const any = await loadCanteens(params.get("canteen"));
      if (any && params.get("canteen")) await load(); else TrayCharts.setState("idle");
    } catch (err) {
      TrayCharts.showError(String(err.message || err));
      TrayCharts.setState("error");
    }
  }

  document.addEventListener("DOMContentLoaded", startPage);
})();
