// smapx base map: land, coastlines, country and state borders, lakes and place names, drawn
// from atlases installed at build time into /static/vendor (nothing is fetched from elsewhere).
"use strict";

const BASEMAP_FILES = {
  world: "/static/vendor/countries-50m.json",
  states: "/static/vendor/states-10m.json",
  lakes: "/static/vendor/lakes.geo.json",
  places: "/static/vendor/places.json",
};
// Smallest population labelled at each zoom; more places appear as one zooms in.
const PLACE_MIN_POPULATION = [[4, 2e6], [5, 5e5], [6, 1.5e5], [7, 6e4], [99, 0]];
const MAX_LABELS = 80;
const BASEMAP_CREDIT = "Natural Earth · US Census Bureau · places: SimpleMaps (CC BY 4.0)";

function basemapPanes(map) {
  const panes = [["land", 150], ["lines", 420], ["labels", 430]];
  for (const [name, z] of panes) {
    const pane = map.createPane(name);
    pane.style.zIndex = z;
    if (name !== "land") pane.style.pointerEvents = "none";
  }
}

function lineLayer(geometry, className, pane) {
  return L.geoJSON(geometry, { pane, interactive: false, style: { className, fill: false } });
}

function placeThreshold(zoom) {
  return PLACE_MIN_POPULATION.find(([z]) => zoom <= z)[1];
}

// Labels of the largest places in view, skipping any that would overlap one already placed.
function drawPlaces(map, places, group) {
  group.clearLayers();
  const bounds = map.getBounds().pad(0.05);
  const minimum = placeThreshold(map.getZoom());
  const taken = [];
  for (const [name, lat, lon, population] of places) {
    if (population < minimum || !bounds.contains([lat, lon])) continue;
    const p = map.latLngToContainerPoint([lat, lon]);
    const box = { x0: p.x - 3, y0: p.y - 9, x1: p.x + 7 * name.length + 8, y1: p.y + 9 };
    if (taken.some((b) => b.x0 < box.x1 && box.x0 < b.x1 && b.y0 < box.y1 && box.y0 < b.y1)) continue;
    taken.push(box);
    const icon = L.divIcon({ className: "place", html: `<i></i>${name}`, iconSize: null, iconAnchor: [3, 8] });
    L.marker([lat, lon], { icon, pane: "labels", interactive: false, keyboard: false }).addTo(group);
    if (taken.length >= MAX_LABELS) break;
  }
}

async function addBasemap(map) {
  basemapPanes(map);
  const load = (url) => fetch(url).then((r) => {
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  });
  const [world, states, lakes, places] = await Promise.all(
    [BASEMAP_FILES.world, BASEMAP_FILES.states, BASEMAP_FILES.lakes, BASEMAP_FILES.places].map(load));
  L.geoJSON(topojson.feature(world, world.objects.land), {
    pane: "land", interactive: false, style: { className: "land", stroke: false },
  }).addTo(map);
  L.geoJSON(lakes, { pane: "lines", interactive: false, style: { className: "lake" } }).addTo(map);
  lineLayer(topojson.mesh(states, states.objects.states, (a, b) => a !== b), "state", "lines").addTo(map);
  lineLayer(topojson.mesh(world, world.objects.countries, (a, b) => a !== b), "country", "lines").addTo(map);
  lineLayer(topojson.mesh(world, world.objects.land), "coast", "lines").addTo(map);
  map.attributionControl.addAttribution(BASEMAP_CREDIT);
  const labels = L.layerGroup().addTo(map);
  map.on("moveend", () => drawPlaces(map, places, labels));
  drawPlaces(map, places, labels);
  document.body.dataset.basemap = "ready";
}
