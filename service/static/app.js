// smapx web map: product tiles of one day, a date slider, and a click that charts the cell's series.
"use strict";

const COLORS = { smap: "#000000", lstm: "#1f77b4", noah: "#d62728", lsm2: "#9467bd", fused: "#2ca02c" };
const state = { catalog: null, cube: null, dates: [], smapPeriod: null, layer: null, marker: null, plot: null };
const $ = (id) => document.getElementById(id);
const map = L.map("map", { worldCopyJump: true }).setView([38, -97], 4);
window.smapxMap = map;

function dayOffset(start, days) {
  const d = new Date(start + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

function daysBetween(a, b) {
  return Math.round((Date.parse(b + "T00:00:00Z") - Date.parse(a + "T00:00:00Z")) / 86400000);
}

function tileQuery() {
  const day = dayOffset(state.cube.extent.start, Number($("day").value));
  $("day-label").textContent = day;
  return `date=${day}&colormap=${$("colormap").value}&rescale=${$("vmin").value},${$("vmax").value}` +
         `&cube=${encodeURIComponent(state.cube.name)}`;
}

function tileUrl() {
  return `/v1/tiles/${$("product").value}/{z}/{x}/{y}.png?${tileQuery()}`;
}

function refreshTiles() {
  if (state.layer) state.layer.setUrl(tileUrl());
  else state.layer = L.tileLayer(tileUrl(), { maxZoom: 12, opacity: 0.9, attribution: "smapx" }).addTo(map);
  refreshLegend();
}

async function refreshLegend() {
  const r = await fetch(`/v1/legend?f=json&colormap=${$("colormap").value}&rescale=${$("vmin").value},${$("vmax").value}`);
  if (!r.ok) return;
  const legend = await r.json();
  $("legend-bar").style.background = `linear-gradient(to right, ${legend.stops.map((s) => s[1]).join(",")})`;
  $("legend-ticks").innerHTML = legend.stops
    .map((s) => `<span>${s[0].toFixed(2)}</span>`).join("");
}

function selectCube(name) {
  state.cube = { name, ...state.catalog.cubes[name] };
  const products = Object.keys(state.cube.products);
  $("product").innerHTML = products.map((p) => `<option ${p === "lstm" ? "selected" : ""}>${p}</option>`).join("");
  const days = daysBetween(state.cube.extent.start, state.cube.extent.end);
  $("day").max = days;
  $("day").value = days;
  state.smapPeriod = state.cube.smap_period;
  const e = state.cube.extent;
  map.fitBounds([[e.south, e.west], [e.north, e.east]], { padding: [20, 20] });
  refreshTiles();
}

function shadeSmap(u) {
  if (!state.smapPeriod) return;
  const x0 = u.valToPos(Date.parse(state.smapPeriod.start) / 1000, "x", true);
  const x1 = u.valToPos(Date.parse(state.smapPeriod.end) / 1000, "x", true);
  const { top, height, left, width } = u.bbox;
  const a = Math.max(left, x0), b = Math.min(left + width, x1);
  if (b <= a) return;
  u.ctx.save();
  u.ctx.fillStyle = "rgba(255, 200, 0, 0.15)";
  u.ctx.fillRect(a, top, b - a, height);
  u.ctx.restore();
}

async function showSeries(latlng) {
  const products = Object.keys(state.cube.products);
  const url = `/v1/series?lat=${latlng.lat.toFixed(5)}&lon=${latlng.lng.toFixed(5)}` +
              `&products=${products.join(",")}&cube=${encodeURIComponent(state.cube.name)}`;
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) {
    $("message").textContent = typeof body.detail === "string" ? body.detail : "no series here";
    return;
  }
  $("message").textContent = `cell row ${body.cell.row}, col ${body.cell.col}`;
  if (state.marker) state.marker.setLatLng(latlng); else state.marker = L.marker(latlng).addTo(map);
  const x = body.time.map((t) => Date.parse(t + "T00:00:00Z") / 1000);
  const series = [{}].concat(products.map((p) => ({
    label: p, stroke: COLORS[p], width: p === "smap" ? 0 : 1.2,
    points: { show: p === "smap", size: 3, fill: COLORS[p] }, spanGaps: false,
  })));
  const opts = {
    width: Math.min(900, window.innerWidth - 40), height: 260, series,
    axes: [{}, { label: "m³/m³", size: 60 }], scales: { x: { time: true } },
    hooks: { drawClear: [shadeSmap] },
  };
  $("chart-panel").hidden = false;
  $("chart-title").textContent = `${body.cell.lat.toFixed(3)}°N ${body.cell.lon.toFixed(3)}°E ` +
    `(${state.cube.name}; SMAP period shaded)`;
  if (state.plot) state.plot.destroy();
  state.plot = new uPlot(opts, [x, ...products.map((p) => body[p])], $("chart"));
  document.body.dataset.chart = String(products.length);
}

async function start() {
  state.catalog = await (await fetch("/v1/products")).json();
  $("cube").innerHTML = Object.keys(state.catalog.cubes).map((c) => `<option>${c}</option>`).join("");
  $("cube").addEventListener("change", (e) => selectCube(e.target.value));
  for (const id of ["product", "colormap", "vmin", "vmax"]) $(id).addEventListener("change", refreshTiles);
  $("day").addEventListener("input", () => { $("day-label").textContent = dayOffset(state.cube.extent.start, Number($("day").value)); });
  $("day").addEventListener("change", refreshTiles);
  $("chart-close").addEventListener("click", () => { $("chart-panel").hidden = true; });
  map.on("click", (e) => showSeries(e.latlng));
  selectCube(state.catalog.default);
}

start();
