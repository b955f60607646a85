// TrayLens diary dashboard: one person's ISO week (GET /v1/users/{id}/weeks/{week}) and
// trends (GET /v1/users/{id}/trends), drawn with Chart.js through charts.js.
// A link may carry #key=…&user=…&week=2026-W48&system=us_dri&weeks=12.
"use strict";

(() => {
  const { $, el, fmt, api, draw, COLOURS } = TrayCharts;
  const nutrients = new Map(); // key -> {unit, name_en, name_ko}
  const HABITS = [
    ["energy", "Energy"], ["sodium", "Sodium"], ["top_foods", "Favourite foods"],
    ["leftovers", "Leftovers"], ["most_left_foods", "Most-left foods"],
  ];
  const SERIES_NAMES = {
    energy_kcal_per_day: "Energy per day", protein_pct_energy: "Protein, % of energy",
    fat_pct_energy: "Fat, % of energy", carbohydrate_pct_energy: "Carbohydrate, % of energy",
    sodium_mg_per_day: "Sodium per day", sugars_g_per_day: "Sugars per day",
    fiber_g_per_day: "Fibre per day",
  };
  const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

  function isoWeek(date) {
    const d = new Date(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()));
    const weekday = d.getUTCDay() || 7;
    d.setUTCDate(d.getUTCDate() + 4 - weekday); // the week's Thursday decides its year
    const year = d.getUTCFullYear();
    const week = Math.ceil(((d - Date.UTC(year, 0, 1)) / 86400000 + 1) / 7);
    return `${year}-W${String(week).padStart(2, "0")}`;
  }

  const foodName = (f) => f.name_ko || f.name_en || f.food_id;
  const nutrientName = (key) => (nutrients.get(key) || {}).name_en || key;

  async function loadNutrientNames() {
    try {
      const answer = await fetch("/page/nutrients");
      if (answer.ok) for (const n of await answer.json()) nutrients.set(n.key, n);
    } catch (err) { /* keys are shown instead of names */ }
  }

  async function loadUsers(wanted) {
    const select = $("user-select");
    select.disabled = true;
    const users = await api("/v1/users");
    select.replaceChildren();
    if (!users.length) select.append(el("option", { value: "" }, "This key sees no people yet"));
    for (const u of users) {
      const name = u.display_name || u.external_ref || "person";
      select.append(el("option", { value: u.id }, `${name} · ${u.id.slice(0, 8)}`));
    }
    if (wanted && users.some((u) => u.id === wanted)) select.value = wanted;
    select.disabled = !users.length;
    return users.length > 0;
  }

  function refValue(day, nutrient, field) {
    const ref = (day.references || []).find((r) => r.nutrient === nutrient);
    return ref ? ref[field] : null;
  }

  function drawDays(report) {
    const days = report.days;
    const labels = days.map((d, i) => `${WEEKDAYS[i]} ${d.date.slice(5)}`);
    // A day without a meal that holds food (none logged, or photos with no food found) is a
    // gap, not a day of 0 kcal.
    const logged = (d) => d.meals.some((m) => !m.no_food_found);
    const amount = (key) => days.map((d) => (logged(d) ? d.totals[key] ?? null : null));
    const target = refValue(days[0], "energy_kcal", "target");
    const upper = refValue(days[0], "sodium_mg", "upper");
    const energy = [{ key: "energy_kcal", label: "Energy", unit: "kcal", data: amount("energy_kcal"), colour: COLOURS.blue }];
    if (target !== null) energy.push({ key: "target", label: "Target (EER)", unit: "kcal", type: "line", dashed: true, colour: COLOURS.grey, data: days.map(() => target) });
    draw("chart-days-energy", { labels, series: energy, y: { title: "kcal" }, labelTitle: "Day" });
    const sodium = [{ key: "sodium_mg", label: "Sodium", unit: "mg", data: amount("sodium_mg"), colour: COLOURS.orange }];
    if (upper !== null) sodium.push({ key: "upper", label: "Upper limit", unit: "mg", type: "line", dashed: true, colour: COLOURS.red, data: days.map(() => upper) });
    draw("chart-days-sodium", { labels, series: sodium, y: { title: "mg" }, labelTitle: "Day" });
    const notes = [...new Set(days.flatMap((d) => d.notes || []))];
    $("days-notes").textContent = notes.join(" · ");
  }

  function drawNutrients(report) {
    const rows = (report.daily_means || []).filter((r) => r.pct_of_target !== null);
    draw("chart-nutrients", {
      labels: rows.map((r) => `${nutrientName(r.nutrient)}${r.incomplete ? " ≥" : ""}`),
      series: [{
        key: "pct_of_target", label: "% of target", unit: "%", data: rows.map((r) => r.pct_of_target),
        colours: rows.map((r) => (r.over_upper ? `${COLOURS.red}dd` : `${COLOURS.green}cc`)), colour: COLOURS.green,
      }],
      horizontal: true, height: 40 + 24 * rows.length, y: { title: "% of target" }, labelTitle: "Nutrient",
      emptyText: "No reference intakes: set the person's sex and birth year, or log a meal this week.",
    });
  }

  function drawTrends(trends) {
    const labels = trends.weeks.map((w) => w.week);
    const series = (name) => trends.weeks.map((w) => w[name]);
    const ref = (name, field) => (trends.references.find((r) => r.series === name) || {})[field] ?? null;
    const flat = (value) => trends.weeks.map(() => value);
    $("trend-label").textContent = `· ${trends.start} – ${trends.end}, ${trends.span_weeks} weeks`;
    const energy = [{ key: "energy_kcal_per_day", label: "Energy", unit: "kcal", type: "line", data: series("energy_kcal_per_day"), colour: COLOURS.blue }];
    const target = ref("energy_kcal_per_day", "target");
    if (target !== null) energy.push({ key: "target", label: "Target", unit: "kcal", type: "line", dashed: true, colour: COLOURS.grey, data: flat(target) });
    draw("chart-trend-energy", { labels, series: energy, y: { title: "kcal / day" }, labelTitle: "Week" });
    draw("chart-trend-macros", {
      labels, labelTitle: "Week", y: { title: "% of energy" },
      series: [
        { key: "protein_pct_energy", label: "Protein", unit: "%", type: "line", data: series("protein_pct_energy"), colour: COLOURS.red },
        { key: "fat_pct_energy", label: "Fat", unit: "%", type: "line", data: series("fat_pct_energy"), colour: COLOURS.orange },
        { key: "carbohydrate_pct_energy", label: "Carbohydrate", unit: "%", type: "line", data: series("carbohydrate_pct_energy"), colour: COLOURS.blue },
      ],
    });
    const sodium = [{ key: "sodium_mg_per_day", label: "Sodium", unit: "mg", type: "line", data: series("sodium_mg_per_day"), colour: COLOURS.orange }];
    const upper = ref("sodium_mg_per_day", "upper");
    if (upper !== null) sodium.push({ key: "upper", label: "Upper limit", unit: "mg", type: "line", dashed: true, colour: COLOURS.red, data: flat(upper) });
    draw("chart-trend-sodium", { labels, series: sodium, y: { title: "mg / day" }, labelTitle: "Week" });
    draw("chart-trend-sugars-fibre", {
      labels, labelTitle: "Week", y: { title: "g / day" },
      series: [
        { key: "sugars_g_per_day", label: "Sugars", unit: "g", type: "line", data: series("sugars_g_per_day"), colour: COLOURS.pink },
        { key: "fiber_g_per_day", label: "Fibre", unit: "g", type: "line", data: series("fiber_g_per_day"), colour: COLOURS.green },
      ],
    });
    const body = $("trend-lines").querySelector("tbody");
    body.replaceChildren(...trends.series.map((line) => el("tr", { "data-series": line.series },
      el("th", { scope: "row" }, SERIES_NAMES[line.series] || line.series),
      el("td", { class: "num" }, line.slope_per_week === null ? "–" : `${fmt(line.slope_per_week, 2)} ${line.unit}`),
      el("td", { class: "num" }, line.change === null ? "–" : `${fmt(line.change)} ${line.unit}`),
      el("td", { class: line.direction ? `dir-${line.direction}` : "" },
        line.direction || `too few weeks (${line.weeks_with_data})`))));
  }

  function drawHabits(habits) {
    const list = $("habit-list");
    list.replaceChildren();
    for (const [key, title] of HABITS) {
      const ev = (habits.evidence || {})[key];
      if (!ev) continue;
      const numbers = Object.entries(ev.numbers).map(([k, v]) => `${k.replaceAll("_", " ")} ${fmt(v)}`).join(" · ");
      const ids = el("ul", { class: "meal-ids", "aria-label": "Meals behind it" },
        ...ev.meal_ids.map((id) => el("li", {}, el("code", { "data-meal-id": id }, id))));
      list.append(el("li", { "data-habit": key },
        el("span", { class: "habit-name" }, title),
        el("span", { class: "statement" }, ev.statement),
        el("p", { class: "numbers" }, `${numbers} · ${ev.days} day${ev.days === 1 ? "" : "s"}`
          + (ev.flagged_dates.length ? ` · flagged: ${ev.flagged_dates.join(", ")}` : "")),
        el("details", {}, el("summary", {}, `Meals behind it (${ev.meal_ids.length})`), ids)));
    }
  }

  function drawMostLeft(habits) {
    const foods = habits.most_left_foods || [];
    draw("chart-most-left", {
      labels: foods.map(foodName), horizontal: true, height: 50 + 30 * foods.length,
      series: [{ key: "leftover_g", label: "Left", unit: "g", data: foods.map((f) => f.leftover_g), colour: COLOURS.red }],
      y: { title: "g" }, labelTitle: "Dish", emptyText: "Nothing was left on a before/after tray this week.",
    });
  }

  async function load() {
    const user = $("user-select").value;
    const week = $("week-input").value;
    if (!user || !week) { TrayCharts.showError("Choose a person and a week."); TrayCharts.setState("error"); return; }
    const system = $("system-select").value;
    const weeks = $("span-select").value;
    TrayCharts.clearError();
    TrayCharts.setState("busy");
    TrayCharts.setStatus("Loading…");
    try {
      const q = `system=${encodeURIComponent(system)}`;
      const report = await api(`/v1/users/${encodeURIComponent(user)}/weeks/${encodeURIComponent(week)}?${q}`);
      const sunday = report.days[report.days.length - 1].date;
      const trends = await api(`/v1/users/${encodeURIComponent(user)}/trends?weeks=${weeks}&end=${sunday}&${q}`);
      $("report").hidden = false;
      $("week-label").textContent = `· ${report.week}, ${report.habits.days_logged} of 7 days logged`;
      $("system-label").textContent = system === "us_dri" ? "US DRI" : "KDRI 2020";
      drawDays(report);
      drawNutrients(report);
      drawTrends(trends);
      drawHabits(report.habits);
      drawMostLeft(report.habits);
      TrayCharts.setStatus(`Week ${report.week}; trend ${trends.start} – ${trends.end}.`);
      TrayCharts.setState("ready");
    } catch (err) {
      TrayCharts.showError(String(err.message || err));
      TrayCharts.setStatus("");
      TrayCharts.setState("error");
    }
  }

  async function start() {
    const params = TrayCharts.readFragment();
    $("week-input").value = params.get("week") || isoWeek(new Date());
    if (params.get("system")) $("system-select").value = params.get("system");
    if (params.get("weeks")) $("span-select").value = params.get("weeks");
    $("controls").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    const reload = async () => {
      TrayCharts.clearError();
      try { await loadUsers($("user-select").value); TrayCharts.setState("idle"); } catch (err) {
        TrayCharts.showError(String(err.message || err)); TrayCharts.setState("error");
      }
    };
    $("reload-users").addEventListener("click", reload);
    $("api-key").addEventListener("change", reload);
    await loadNutrientNames();
    if (!TrayCharts.key()) { TrayCharts.setState("idle"); return; }
    try {
      const any = await loadUsers(params.get("user"));
      if (any && params.get("user")) await load(); else TrayCharts.setState("idle");
    } catch (err) {
      TrayCharts.showError(String(err.message || err));
      TrayCharts.setState("error");
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
