// smapx web map, areas: pick a US state or county (the Census atlas the base map draws) or draw
// a polygon, and chart its area-weighted mean and the share of its area in each drought class
// (D0..D4, cumulative) over the year up to the day shown; download the day's drought shapes.
// It reads the map's cube, product and day from the URL that app.js keeps.
"use strict";

(() => {
  const DROUGHT = [["D0", "#e6c200"], ["D1", "#fcb04f"], ["D2", "#ffaa00"], ["D3", "#e60000"], ["D4", "#730000"]];
  const PERCENTILE = "_percentile";
  const $ = (id) => document.getElementById(id);
  const map = window.smapxMap;
  const areas = { outline: L.layerGroup().addTo(map), drawing: null, plot: null, body: null, catalog: null };
  window.smapxAreas = areas;

  const view = () => Object.fromEntries(new URLSearchParams(location.hash.slice(1)).entries());
  const yearBefore = (iso) => {
    const d = new Date(iso + "T00:00:00Z");
    d.setUTCFullYear(d.getUTCFullYear() - 1);
    return d.toISOString().slice(0, 10);
  };

  function panel() {
    const box = document.createElement("details");
    box.id = "areas";
    box.innerHTML = `<summary>Areas and drought shapes</summary>
      <label>State <select id="area-state"><option value="">choose a state</option></select></label>
      <label>County <select id="area-county" disabled><option value="">the whole state</option></select></label>
      <div class="area-tools"><button id="area-draw" title="click the corners, double-click the last">Draw a polygon</button>
        <button id="area-clear" title="remove the area">Clear</button></div>
      <a id="drought-shapes" href="#" download>The day's drought shapes (GeoJSON)</a>
      <a id="drought-gpkg" href="#" download>… as a GeoPackage</a>
      <p id="area-status" aria-live="polite"></p>`;
    $("panel").insertBefore(box, $("message"));
    const chart = document.createElement("section");
    chart.id = "area-panel";
    chart.hidden = true;
    chart.innerHTML = `<header><span id="area-title"></span><span class="tools">
      <a id="area-csv" download>CSV</a><button id="area-close" title="close">×</button></span></header>
      <div id="area-chart"></div>`;
    $("layout").appendChild(chart);
  }

  // the source product charted (lstm for lstm or lstm_percentile) and its percentile if served
  function products() {
    const product = view().product || "lstm";
    const source = product.endsWith(PERCENTILE) ? product.slice(0, -PERCENTILE.length) : product;
    const cube = areas.catalog && areas.catalog.cubes[view().cube || areas.catalog.default];
    const offered = cube ? Object.keys(cube.products) : [];
    return offered.includes(source + PERCENTILE) ? [source, source + PERCENTILE] : [source];
  }

  function query(extra) {
    const v = view();
    const params = new URLSearchParams({ products: products().join(","), ...extra });
    if (v.cube) params.set("cube", v.cube);
    if (v.date) { params.set("start", yearBefore(v.date)); params.set("end", v.date); }
    return params;
  }

  // request(params) answers the area's statistics; csv(params), where given, links them as CSV
  async function chartArea(title, request, csv) {
    $("area-status").textContent = `Reading ${title}…`;
    const params = query({});
    const r = await request(params);
    const body = await r.json();
    if (!r.ok) { $("area-status").textContent = body.detail; return; }
    areas.body = body;
    $("area-csv").hidden = !csv;
    if (csv) $("area-csv").href = csv(params);
    $("area-status").textContent = `${title}: ${body.area.cells} cells, ${Math.round(body.area.covered_km2).toLocaleString()} km² with data`;
    $("area-title").textContent = `${title} · area-weighted daily mean and % of the area in each drought class`;
    draw(body);
  }

  function draw(body) {
    const [source, percentile] = products();
    const x = body.dates.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
    const data = [x, body[source].mean];
    const series = [{}, { label: `${source} mean (m³/m³)`, stroke: "#1f77b4", width: 1.5, scale: "sm" }];
    if (percentile && body[percentile]) {
      for (const [name, color] of DROUGHT) {
        data.push(body[percentile][name]);
        series.push({ label: `${name} %`, stroke: color, fill: color + "55", width: 1, scale: "%" });
      }
    }
    $("area-panel").hidden = false;
    map.invalidateSize();
    if (areas.plot) areas.plot.destroy();
    const width = $("area-chart").clientWidth || window.innerWidth - 20;
    areas.plot = new uPlot({
      width, height: 190, series,
      scales: { "%": { range: [0, 100] } },
      axes: [{}, { scale: "sm", label: "m³/m³" }, { scale: "%", side: 1, label: "% of area", grid: { show: false } }],
    }, data, $("area-chart"));
  }

  function outline(geojson) {
    areas.outline.clearLayers();
    const layer = L.geoJSON(geojson, { style: { color: "#111", weight: 2, fill: false } }).addTo(areas.outline);
    map.fitBounds(layer.getBounds(), { maxZoom: 8 });
  }

  async function atlas(name) {
    const topo = await (await fetch(`/static/vendor/${name}-10m.json`)).json();
    return topojson.feature(topo, topo.objects[name]).features;
  }

  async function pickState(states) {
    const id = $("area-state").value;
    const county = $("area-county");
    county.innerHTML = `<option value="">the whole state</option>`;
    county.disabled = !id;
    if (!id) return;
    const state = states.find((f) => f.id === id);
    outline(state);
    const fips = `state:${id}`;
    chartFips(fips, state.properties.name);
    const counties = (areas.counties ||= await atlas("counties"))
      .filter((f) => f.id.startsWith(id)).sort((a, b) => a.properties.name.localeCompare(b.properties.name));
    county.innerHTML += counties.map((f) => `<option value="${f.id}">${f.properties.name}</option>`).join("");
  }

  function chartFips(fips, title) {
    const url = (params) => `/v1/areas/${fips}/series?${params}`;
    return chartArea(title, (params) => fetch(url(params)), (params) => `${url(params)}&format=csv`);
  }

  function pickCounty() {
    const id = $("area-county").value;
    if (!id) { pickState(areas.states); return; }
    const county = areas.counties.find((f) => f.id === id);
    outline(county);
    chartFips(`county:${id}`, `${county.properties.name} County, ${$("area-state").selectedOptions[0].text}`);
  }

  // drawing: each click a corner, a double click closes the polygon and charts it
  function startDrawing() {
    stopDrawing();
    areas.outline.clearLayers();
    const corners = [];
    const line = L.polyline([], { color: "#111", dashArray: "4 3" }).addTo(areas.outline);
    const add = (e) => { corners.push(e.latlng); line.setLatLngs(corners); };
    const finish = (e) => {
      L.DomEvent.stop(e);
      stopDrawing();
      if (corners.length < 3) { $("area-status").textContent = "A polygon needs three corners or more."; return; }
      const ring = corners.map((c) => [c.lng, c.lat]);
      ring.push(ring[0]);
      const polygon = { type: "Polygon", coordinates: [ring] };
      outline(polygon);
      chartArea("The polygon drawn", (params) => fetch(`/v1/areas/series?${params}`, {
        method: "POST", headers: { "Content-Type": "application/geo+json" }, body: JSON.stringify(polygon),
      }));
    };
    map.doubleClickZoom.disable();
    map.on("click", add);
    map.once("dblclick", finish);
    areas.drawing = { add, finish };
    map.getContainer().style.cursor = "crosshair";
    $("area-status").textContent = "Click the corners; double-click the last one.";
  }

  function stopDrawing() {
    if (!areas.drawing) return;
    map.off("click", areas.drawing.add);
    map.off("dblclick", areas.drawing.finish);
    map.doubleClickZoom.enable();
    map.getContainer().style.cursor = "";
    areas.drawing = null;
  }

  function clearArea() {
    stopDrawing();
    areas.outline.clearLayers();
    $("area-panel").hidden = true;
    $("area-state").value = "";
    $("area-county").disabled = true;
    $("area-status").textContent = "";
    map.invalidateSize();
  }

  // the day's shapes of the percentile shown (or of the product's percentile)
  function shapesLink() {
    const v = view();
    const pct = products()[1];
    for (const [id, ext] of [["drought-shapes", "geojson"], ["drought-gpkg", "gpkg"]]) {
      const link = $(id);
      link.hidden = !pct || !v.date;
      if (link.hidden) continue;
      link.href = `/v1/drought/${v.date}.${ext}?product=${pct}` + (v.cube ? `&cube=${v.cube}` : "");
      link.download = `drought-${pct}-${v.date}.${ext}`;
    }
  }

  async function start() {
    panel();
    areas.catalog = await (await fetch("/v1/products")).json();
    areas.states = (await atlas("states")).sort((a, b) => a.properties.name.localeCompare(b.properties.name));
    $("area-state").innerHTML += areas.states.map((f) => `<option value="${f.id}">${f.properties.name}</option>`).join("");
    $("area-state").addEventListener("change", () => pickState(areas.states));
    $("area-county").addEventListener("change", pickCounty);
    $("area-draw").addEventListener("click", startDrawing);
    $("area-clear").addEventListener("click", clearArea);
    $("area-close").addEventListener("click", () => { $("area-panel").hidden = true; map.invalidateSize(); });
    // the map's day changes without an event: the link is made as it is pointed at or followed
    for (const id of ["drought-shapes", "drought-gpkg"]) {
      for (const event of ["mouseenter", "focus", "click"]) $(id).addEventListener(event, shapesLink);
    }
    shapesLink();
    document.body.dataset.areas = "ready";
  }

  start();
})();
