// smapx web map: one day's product tiles over an offline base map, a calendar with steps and
// animation, a readout under the cursor, and a click that charts the cell's series below the map.
// The map's state (cube, product, day, view, colormap, range, charted point) lives in the URL.
// Colormaps, their legends and which products a classed one colours come from the server's one
// registry (/v1/colormaps, /v1/legend); the catalogue is re-read so a growing cube's days appear.
"use strict";

// The evaluation report's colours (model/evaluation/report.py COLORS; fused = its weighted fusion).
const COLORS = { smap: "#7f7f7f", lstm: "#d62728", noah: "#1f77b4", lsm2: "#2ca02c", fused: "#ff7f0e" };
const DASHES = { lsm2: [2, 3], fused: [7, 3] };
const DAY_S = 86400;
const PLAY_FRAME_MS = 700;
const TILE_OPACITY = 0.85;
const FRAME_TIMEOUT_MS = 4000;
const CATALOG_REFRESH_MS = 30000;
const state = {
  catalog: null, cube: null, date: null, layer: null, shown: null, marker: null, plot: null,
  series: null, point: null, window: "1", kind: null, playing: null, hover: null, hoverTimer: null,
  colormaps: null,
};
const $ = (id) => document.getElementById(id);
const map = L.map("map", { worldCopyJump: true }).setView([38, -97], 4);
window.smapxMap = map;
window.smapxChart = () => state.plot;

// ---- dates and coordinates as people write them ----
const toSeconds = (iso) => Date.parse(iso + "T00:00:00Z") / 1000;
const isoDate = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 10);

function shiftDate(iso, step, unit) {
  const d = new Date(iso + "T00:00:00Z");
  if (unit === "month") d.setUTCMonth(d.getUTCMonth() + step);
  else d.setUTCDate(d.getUTCDate() + step * (unit === "week" ? 7 : 1));
  return d.toISOString().slice(0, 10);
}

const clampDate = (iso) => (iso < state.cube.extent.start ? state.cube.extent.start
  : iso > state.cube.extent.end ? state.cube.extent.end : iso);
const latText = (lat) => `${Math.abs(lat).toFixed(3)}° ${lat >= 0 ? "N" : "S"}`;
const lonText = (lon) => `${Math.abs(lon).toFixed(3)}° ${lon >= 0 ? "E" : "W"}`;
const placeText = (lat, lon) => `${latText(lat)}, ${lonText(lon)}`;

// ---- products ----
const isPercentile = (p) => p.endsWith("_percentile");
const isSpread = (p) => p.endsWith("_spread");
// Derived products are named <source>_<suffix> (model.product.kinds).
const DERIVED = /_(percentile|spread|anomaly|change_\d+d|onset)$/;
const baseProduct = (p) => p.replace(DERIVED, "");
const colorOf = (p) => COLORS[baseProduct(p)] || "#444";
const UNIT_TEXT = { "m3 m-3": "m³/m³", percent: "%" };
const unitsOf = (p) => { const u = state.cube.products[p]?.units ?? "m3 m-3"; return UNIT_TEXT[u] ?? u; };
// A product's family: values (and their spread), percentiles, or anomalies.
const kindOf = (p) => { const m = p.match(DERIVED); return !m || m[1] === "spread" ? "value" : m[1]; };
const kindLabel = (k) => ({ value: "values", percentile: "percentiles", anomaly: "anomalies", onset: "onsets" }[k]
  ?? k.replace(/^change_(\d+)d$/, "$1-day change"));

// The colormaps a product can take: a classed one (drought) colours its own kind of product only.
function colormapFits(name, product) {
  const classed = state.colormaps.classed[name];
  return !classed || product.endsWith(classed.products.replace("*", ""));
}

function fillColormaps(product, wanted) {
  const names = state.colormaps.colormaps.filter((c) => colormapFits(c, product));
  const chosen = names.includes(wanted) ? wanted : state.colormaps.default;
  $("colormap").innerHTML = names.map((c) => `<option ${c === chosen ? "selected" : ""}>${c}</option>`).join("");
  $("colormap").value = chosen;
  return chosen === wanted;
}

const classedColormap = () => $("colormap").value in state.colormaps.classed;

// A product's default colour range: the server's, as its legend gives it.
async function defaultRange(product) {
  const r = await fetch(`/v1/legend?f=json&product=${product}`);
  const legend = await r.json();
  return r.ok && legend.rescale ? legend.rescale : [0, 0.5];
}

// The latest day with data of a product: SMAP stops where its retrievals stop.
function latestDay(product) {
  const smap = state.cube.smap_period;
  return product === "smap" && smap ? smap.end : state.cube.extent.end;
}

// ---- the URL keeps the view ----
function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return Object.fromEntries(params.entries());
}

function writeHash() {
  if (!state.cube) return;
  const c = map.getCenter();
  const params = new URLSearchParams({
    cube: state.cube.name, product: $("product").value, date: state.date,
    colormap: $("colormap").value, range: `${$("vmin").value},${$("vmax").value}`,
    view: `${c.lat.toFixed(4)},${c.lng.toFixed(4)},${map.getZoom()}`,
  });
  if (state.point) params.set("point", `${state.point.lat.toFixed(5)},${state.point.lng.toFixed(5)}`);
  if (state.point) params.set("window", state.window);
  history.replaceState(null, "", "#" + params.toString());
}

// ---- tiles, legend, day ----
function styleQuery() {
  return `colormap=${$("colormap").value}&rescale=${$("vmin").value},${$("vmax").value}`;
}

function tileUrl() {
  const query = `date=${state.date}&${styleQuery()}&cube=${encodeURIComponent(state.cube.name)}`;
  return `/v1/tiles/${$("product").value}/{z}/{x}/{y}.png?${query}`;
}

// A new day or style loads as a layer of its own, hidden, over the one shown; it replaces that
// one once its tiles are in (or after FRAME_TIMEOUT_MS), so the map never shows bare base map.
// A frame superseded before it loaded is dropped.
function refreshTiles() {
  const layer = L.tileLayer(tileUrl(), { maxZoom: 12, opacity: 0, attribution: "smapx" });
  if (state.layer && state.layer !== state.shown) map.removeLayer(state.layer);
  state.layer = layer;
  const reveal = () => {
    clearTimeout(timer);
    if (state.layer !== layer || state.shown === layer) return;
    layer.setOpacity(TILE_OPACITY);
    if (state.shown) map.removeLayer(state.shown);
    state.shown = layer;
  };
  const timer = setTimeout(reveal, FRAME_TIMEOUT_MS);
  layer.once("load", reveal);
  layer.addTo(map);
  refreshLegend();
  writeHash();
}

async function refreshLegend() {
  const product = $("product").value;
  const r = await fetch(`/v1/legend?f=json&${styleQuery()}&product=${product}`);
  const legend = await r.json();
  if (!r.ok) { $("legend").textContent = legend.detail; return; }
  if (legend.kind === "classes") {
    $("legend").innerHTML = `<ul>${legend.classes.map((c) =>
      `<li data-class="${c.class}"><i style="background:${c.color}"></i><b>${c.class}</b>${c.label}</li>`).join("")}</ul>` +
      `<div class="units">${product} ${legend.units}</div>`;
    return;
  }
  const gradient = legend.stops.map((s) => s[1]).join(",");
  $("legend").innerHTML = `<div class="bar-frame"><div class="bar" style="background:linear-gradient(to right, ${gradient})"></div>` +
    `<div class="ticks">${legend.ticks.map((t) =>
      `<span style="left:${(100 * t.position).toFixed(2)}%" data-value="${t.value}">${t.label}</span>`).join("")}</div></div>` +
    `<div class="units">${product}, ${legend.units === "percent" ? "percentile" : legend.units.replace("m3 m-3", "m³/m³")}</div>`;
}

function showStyleFields() {
  $("range-field").hidden = classedColormap();
  $("range-units").textContent = unitsOf($("product").value);
}

function setDate(iso) {
  state.date = clampDate(iso);
  $("date").value = state.date;
  refreshTiles();
  markDay();
  showReadout();
}

// ---- readout under the cursor ----
function showReadout() {
  if (!state.hover) return;
  const { lat, lng } = state.hover;
  $("readout").textContent = `${placeText(lat, lng)} · ${state.date}`;
  clearTimeout(state.hoverTimer);
  state.hoverTimer = setTimeout(() => readValue(lat, lng), 120);
}

async function readValue(lat, lng) {
  const product = $("product").value, day = state.date;
  const url = `/v1/series?lat=${lat.toFixed(5)}&lon=${lng.toFixed(5)}&start=${day}&end=${day}` +
    `&products=${product}&cube=${encodeURIComponent(state.cube.name)}`;
  const r = await fetch(url);
  const body = await r.json();
  const current = state.hover?.lat === lat && state.hover?.lng === lng;
  if (!current || day !== state.date || product !== $("product").value) return;  // superseded
  let value = "outside the cube";
  if (r.ok) {
    const v = body[product][0];
    value = v === null ? `${product}: no data` : `${product} ${v.toFixed(isPercentile(product) ? 0 : 3)} ${unitsOf(product)}`;
  }
  $("readout").textContent = `${placeText(lat, lng)} · ${day} · ${value}`;
}

// Arrow keys step a day (with Shift a week), Page Up/Down a month, where no field has focus.
function stepByKey(event) {
  if (event.target.closest("input, select, textarea")) return;
  const steps = { ArrowLeft: -1, ArrowRight: 1, PageDown: -1, PageUp: 1 };
  if (!(event.key in steps)) return;
  const unit = event.key.startsWith("Page") ? "month" : event.shiftKey ? "week" : "day";
  event.preventDefault();
  setDate(shiftDate(state.date, steps[event.key], unit));
}

// ---- animation over a window ending at the day shown ----
function tilesLoaded(timeoutMs) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    state.layer.once("load", () => { clearTimeout(timer); resolve(); });
  });
}

// Each press of Play starts a new run; Pause (or a new run) ends the one before and goes back to
// the day the run started from.
async function play() {
  const ended = state.playing;
  const run = state.playing = ended ? null : { home: state.date };
  $("play").textContent = run ? "❚❚ Pause" : "▶ Play";
  if (!run) {
    setDate(ended.home);
    return;
  }
  const end = state.date, unit = $("play-unit").value;
  const start = clampDate(shiftDate(end, -Number($("play-window").value), "day"));
  const frames = [];
  for (let d = start; d <= end; d = shiftDate(d, 1, unit)) frames.push(d);
  if (frames[frames.length - 1] !== end) frames.push(end);
  for (let i = 0; state.playing === run; i = (i + 1) % frames.length) {
    setDate(frames[i]);
    await tilesLoaded(FRAME_TIMEOUT_MS);
    await new Promise((resolve) => setTimeout(resolve, PLAY_FRAME_MS));
  }
}

// ---- the chart of one cell ----
// The chart shows one family of products at a time: the map product's by default (values with
// their spread, percentiles, or anomalies), the others a click away.
function chartKinds() {
  return [...new Set(Object.keys(state.cube.products).map(kindOf))];
}

function chartProducts() {
  const all = Object.keys(state.cube.products);
  const kind = state.kind || kindOf($("product").value);
  const order = (p) => { const k = Object.keys(COLORS).indexOf(baseProduct(p)); return k < 0 ? 99 : k; };
  return all.filter((p) => kindOf(p) === kind && !(isSpread(p) && !all.includes(baseProduct(p))))
    .sort((a, b) => order(a) - order(b));
}

function showKinds() {
  const kind = state.kind || kindOf($("product").value);
  $("chart-kind").innerHTML = chartKinds().map((k) =>
    `<button data-kind="${k}" class="${k === kind ? "on" : ""}">${kindLabel(k)}</button>`).join("");
}

function windowRange() {
  const first = toSeconds(state.cube.extent.start), last = toSeconds(state.cube.extent.end);
  if (state.window === "all") return [first, last];
  if (state.window === "smap" && state.cube.smap_period) {
    return [toSeconds(state.cube.smap_period.start), toSeconds(state.cube.smap_period.end)];
  }
  const years = state.window === "smap" ? 1 : Number(state.window);
  const end = Math.min(last, Math.max(toSeconds(state.date), first + years * 365 * DAY_S));
  return [Math.max(first, end - years * 365 * DAY_S), end];
}

function dateTicks(u, splits) {
  const span = u.scales.x.max - u.scales.x.min;
  const width = span > 3 * 365 * DAY_S ? 4 : span > 90 * DAY_S ? 7 : 10;
  return splits.map((s) => isoDate(s).slice(0, width));
}

// Lines and bands of the chart: spread as a band around its product where there is any spread.
function chartSeries(body, products) {
  const x = body.time.map(toSeconds);
  const series = [{ value: (u, v) => (v == null ? "" : isoDate(v)) }];
  const data = [x];
  const bands = [];
  const lines = products.filter((p) => !isSpread(p));
  for (const p of lines) {
    const smap = p === "smap";
    series.push({
      label: p, stroke: colorOf(p), width: smap ? 0 : 1.4, dash: DASHES[baseProduct(p)],
      scale: isPercentile(p) ? "pct" : "y", spanGaps: false,
      points: { show: smap, size: 3, fill: colorOf(p), stroke: colorOf(p) },
      value: (u, v) => (v == null ? "–" : v.toFixed(isPercentile(p) ? 0 : 3)),
    });
    data.push(body[p]);
  }
  const spreads = products.filter((p) => isSpread(p) && body[p].some((v) => v > 0));
  for (const p of spreads) {
    const base = body[baseProduct(p)], spread = body[p];
    const hi = base.map((v, i) => (v == null || spread[i] == null ? null : v + spread[i]));
    const lo = base.map((v, i) => (v == null || spread[i] == null ? null : v - spread[i]));
    const style = { stroke: colorOf(p) + "55", width: 0.5, scale: "y", spanGaps: false, points: { show: false } };
    series.push({ label: `${baseProduct(p)} +1 sd`, ...style }, { label: `${baseProduct(p)} −1 sd`, ...style });
    data.push(hi, lo);
    bands.push({ series: [series.length - 2, series.length - 1], fill: colorOf(p) + "26" });
  }
  return { series, data, bands, shown: lines.concat(spreads) };
}

function shadeSmap(u) {
  const smap = state.cube.smap_period;
  const { top, height, left, width } = u.bbox;
  u.ctx.save();
  if (smap) {
    const a = Math.max(left, u.valToPos(toSeconds(smap.start), "x", true));
    const b = Math.min(left + width, u.valToPos(toSeconds(smap.end), "x", true));
    u.ctx.fillStyle = "rgba(255, 200, 0, 0.15)";
    if (b > a) u.ctx.fillRect(a, top, b - a, height);
  }
  const day = u.valToPos(toSeconds(state.date), "x", true);
  if (day >= left && day <= left + width) {
    u.ctx.fillStyle = "rgba(0, 0, 0, 0.5)";
    u.ctx.fillRect(day, top, 1, height);
  }
  u.ctx.restore();
}

function markDay() {
  if (state.plot) state.plot.redraw(false);
}

function chartSize() {
  return { width: $("chart").clientWidth || window.innerWidth - 20, height: 190 };
}

async function showSeries(latlng) {
  const products = chartProducts();
  const url = `/v1/series?lat=${latlng.lat.toFixed(5)}&lon=${latlng.lng.toFixed(5)}` +
              `&products=${products.join(",")}&cube=${encodeURIComponent(state.cube.name)}`;
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) {
    $("message").textContent = body.detail?.message || (typeof body.detail === "string" ? body.detail : "no series here");
    return;
  }
  state.point = latlng;
  $("message").textContent = `cell row ${body.cell.row}, col ${body.cell.col}`;
  if (state.marker) state.marker.setLatLng(latlng); else state.marker = L.marker(latlng).addTo(map);
  const wasHidden = $("chart-panel").hidden;
  $("chart-panel").hidden = false;
  if (wasHidden) map.invalidateSize();
  $("chart-title").textContent = `${placeText(body.cell.lat, body.cell.lon)} · EASE2 row ${body.cell.row}, ` +
    `col ${body.cell.col} · ${state.cube.name} (SMAP period shaded, day shown marked)`;
  showKinds();
  const chart = chartSeries(body, products);
  state.series = { body, shown: chart.shown };
  const [min, max] = windowRange();
  const percentiles = products.some(isPercentile);
  const opts = {
    ...chartSize(), series: chart.series, bands: chart.bands,
    axes: [{ values: dateTicks },
      percentiles ? { scale: "pct", label: "percentile", size: 45 } : { label: unitsOf(products[0]), size: 55 }],
    scales: { x: { time: true, min, max }, pct: { range: [0, 100] } },
    legend: { live: true },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    hooks: { drawClear: [shadeSmap] },
  };
  if (state.plot) state.plot.destroy();
  state.plot = new uPlot(opts, chart.data, $("chart"));
  document.body.dataset.chart = String(chart.series.length - 1);
  writeHash();
}

function setWindow(name) {
  state.window = name;
  for (const b of $("chart-window").querySelectorAll("button")) b.classList.toggle("on", b.dataset.years === name);
  if (state.plot) {
    const [min, max] = windowRange();
    state.plot.setScale("x", { min, max });
  }
  writeHash();
}

// ---- export of what the chart shows ----
function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function exportName(ext) {
  const { min, max } = state.plot.scales.x;
  const c = state.series.body.cell;
  return `smapx_${c.lat.toFixed(3)}_${c.lon.toFixed(3)}_${isoDate(min)}_${isoDate(max)}.${ext}`;
}

function exportCsv() {
  const { body, shown } = state.series;
  const { min, max } = state.plot.scales.x;
  const rows = [["time", ...shown].join(",")];
  body.time.forEach((t, i) => {
    const s = toSeconds(t);
    if (s < min || s > max) return;
    rows.push([t, ...shown.map((p) => (body[p][i] == null ? "" : body[p][i]))].join(","));
  });
  const head = `# ${placeText(body.cell.lat, body.cell.lon)}, EASE2 row ${body.cell.row} col ${body.cell.col}, ` +
    `cube ${state.cube.name}, units ${shown.map((p) => `${p} ${body.product_units[p]}`).join(", ")}\n`;
  download(exportName("csv"), new Blob([head + rows.join("\n") + "\n"], { type: "text/csv" }));
}

function exportPng() {
  const plot = state.plot.ctx.canvas;
  const canvas = document.createElement("canvas");
  canvas.width = plot.width;
  canvas.height = plot.height + 56;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#222";
  ctx.font = "bold 14px sans-serif";
  ctx.fillText($("chart-title").textContent, 8, 18);
  ctx.drawImage(plot, 0, 28);
  ctx.font = "12px sans-serif";
  let x = 8;
  for (const p of state.series.shown) {
    ctx.fillStyle = colorOf(p);
    ctx.fillRect(x, plot.height + 40, 14, 4);
    ctx.fillStyle = "#222";
    ctx.fillText(p, x + 18, plot.height + 46);
    x += 28 + ctx.measureText(p).width;
  }
  canvas.toBlob((blob) => download(exportName("png"), blob), "image/png");
}

// ---- a bulk job for the cells in view ----
function errorText(body) {
  const detail = body.detail;
  if (typeof detail === "string") return detail;
  if (detail?.message) return detail.message;
  return Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : JSON.stringify(body);
}

function viewBbox() {
  const b = map.getBounds(), e = state.cube.extent;
  return [Math.max(b.getWest(), e.west), Math.max(b.getSouth(), e.south),
    Math.min(b.getEast(), e.east), Math.min(b.getNorth(), e.north)].map((v) => Number(v.toFixed(4)));
}

async function requestDownload() {
  const headers = { "content-type": "application/json" };
  if ($("dl-key").value) headers["X-API-Key"] = $("dl-key").value;
  const request = {
    bbox: viewBbox(), start: $("dl-start").value, end: $("dl-end").value,
    products: [$("product").value], format: $("dl-format").value, cube: state.cube.name,
  };
  $("dl-status").textContent = "submitting…";
  const r = await fetch("/v1/jobs", { method: "POST", headers, body: JSON.stringify(request) });
  const job = await r.json();
  if (!r.ok) { $("dl-status").textContent = `${r.status}: ${errorText(job)}`; return; }
  followJob(job.links.self, job.id);
}

async function followJob(url, id) {
  for (;;) {
    const r = await fetch(url);
    const job = await r.json();
    if (!r.ok) { $("dl-status").textContent = `job ${id}: ${errorText(job)}`; return; }
    $("dl-status").textContent = `job ${id}: ${job.stage || job.state}, ${Math.round(job.percent || 0)} %`;
    if (["failed", "cancelled"].includes(job.state)) { $("dl-status").textContent += ` ${job.error || ""}`; return; }
    if (job.state === "done") break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const files = (await (await fetch(`${url}/files`)).json()).files;
  $("dl-status").innerHTML = `job ${id} done: ` + files.map((f) =>
    `<a href="${f.href}" download>${f.name}</a> (${(f.size / 1e6).toFixed(2)} MB)`).join(", ");
}

function fillDownloadDates() {
  $("dl-end").value = state.date;
  $("dl-start").value = clampDate(shiftDate(state.date, -364, "day"));
  for (const id of ["dl-start", "dl-end"]) {
    $(id).min = state.cube.extent.start;
    $(id).max = state.cube.extent.end;
  }
}

// ---- cube choice and start-up ----
async function selectCube(name, restore = {}) {
  state.cube = { name, ...state.catalog.cubes[name] };
  const products = Object.keys(state.cube.products);
  const product = products.includes(restore.product) ? restore.product
    : products.includes("lstm") ? "lstm" : products[0];
  $("product").innerHTML = products.map((p) => `<option ${p === product ? "selected" : ""}>${p}</option>`).join("");
  $("date").min = state.cube.extent.start;
  $("date").max = state.cube.extent.end;
  const wanted = restore.colormap || $("colormap").value || state.colormaps.default;
  if (!fillColormaps(product, wanted) && restore.colormap) {
    $("message").textContent = `colormap ${restore.colormap} does not colour ${product}: ` +
      `showing ${$("colormap").value}`;
  }
  showStyleFields();
  const range = (restore.range || "").split(",").map(Number);
  [$("vmin").value, $("vmax").value] = range.length === 2 && range.every(Number.isFinite) ? range : await defaultRange(product);
  const view = (restore.view || "").split(",").map(Number);
  if (view.length === 3 && view.every(Number.isFinite)) map.setView([view[0], view[1]], view[2]);
  else {
    const e = state.cube.extent;
    const panel = $("panel").getBoundingClientRect();  // the region clear of the side panel
    map.fitBounds([[e.south, e.west], [e.north, e.east]],
      { paddingTopLeft: [20, 20], paddingBottomRight: [panel.width + 30, 20] });
  }
  if (restore.window) setWindow(restore.window);
  setDate(restore.date && /^\d{4}-\d\d-\d\d$/.test(restore.date) ? restore.date : latestDay(product));
  const point = (restore.point || "").split(",").map(Number);
  if (point.length === 2 && point.every(Number.isFinite)) showSeries(L.latLng(point[0], point[1]));
}

function wireControls() {
  $("cube").addEventListener("change", (e) => selectCube(e.target.value));
  $("product").addEventListener("change", async () => {
    const product = $("product").value;
    [$("vmin").value, $("vmax").value] = await defaultRange(product);
    fillColormaps(product, $("colormap").value);
    showStyleFields();
    refreshTiles();
    showReadout();
    state.kind = null;
    if (state.point) showSeries(state.point);
  });
  $("colormap").addEventListener("change", () => { showStyleFields(); refreshTiles(); });
  for (const id of ["vmin", "vmax"]) $(id).addEventListener("change", refreshTiles);
  $("chart-kind").addEventListener("click", (e) => {
    if (!e.target.dataset.kind) return;
    state.kind = e.target.dataset.kind;
    showSeries(state.point);
  });
  $("date").addEventListener("change", () => { if ($("date").value) setDate($("date").value); });
  for (const b of document.querySelectorAll(".steps button")) {
    b.addEventListener("click", () => setDate(shiftDate(state.date, Number(b.dataset.step), b.dataset.unit)));
  }
  $("play").addEventListener("click", play);
  document.addEventListener("keydown", stepByKey);
  for (const b of $("chart-window").querySelectorAll("button")) {
    b.addEventListener("click", () => setWindow(b.dataset.years));
  }
  $("export-csv").addEventListener("click", exportCsv);
  $("download").addEventListener("toggle", () => { if ($("download").open) fillDownloadDates(); });
  $("dl-submit").addEventListener("click", requestDownload);
  $("export-png").addEventListener("click", exportPng);
  $("chart-close").addEventListener("click", () => {
    $("chart-panel").hidden = true;
    state.point = null;
    map.invalidateSize();
    writeHash();
  });
  map.on("click", (e) => showSeries(e.latlng.wrap()));
  map.on("moveend", writeHash);
  map.on("mousemove", (e) => { state.hover = e.latlng.wrap(); showReadout(); });
  map.on("mouseout", () => { state.hover = null; $("readout").textContent = "Move over the map for coordinates and values."; });
  window.addEventListener("resize", () => state.plot && state.plot.setSize(chartSize()));
}

// A served cube grows (new days) or changes: re-read the catalogue, so its days can be chosen.
async function refreshCatalog() {
  const r = await fetch("/v1/products");
  if (!r.ok) return;
  state.catalog = await r.json();
  const latest = state.catalog.cubes[state.cube.name];
  if (!latest) return;
  state.cube = { name: state.cube.name, ...latest };
  $("date").min = state.cube.extent.start;
  $("date").max = state.cube.extent.end;
}

async function start() {
  addBasemap(map).catch((err) => { $("message").textContent = `base map: ${err.message}`; });
  state.colormaps = await (await fetch("/v1/colormaps")).json();
  state.catalog = await (await fetch("/v1/products")).json();
  setInterval(refreshCatalog, CATALOG_REFRESH_MS);
  $("cube").innerHTML = Object.keys(state.catalog.cubes).map((c) => `<option>${c}</option>`).join("");
  wireControls();
  const restore = readHash();
  const name = restore.cube in state.catalog.cubes ? restore.cube : state.catalog.default;
  $("cube").value = name;
  selectCube(name, restore);
}

start();
