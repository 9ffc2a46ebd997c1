"""The evaluation report as a reader meets it: sites counted as places and stations (not as
site-depth pairs), skill by year drawn over whole years only, panel titles that say what and
where a site is."""

import re

import numpy as np
import pytest

from model.evaluation.evaluate import Options, evaluate
from model.evaluation.report import locations, site_title, whole_years, write_report
from model.product import cube as cubes
from tests import tiny


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """test_evaluate's two-cell cube: a sparse station S1 (5 and 50 cm) and a dense pair."""
    path = tmp_path_factory.mktemp("cube") / "cube.zarr"
    template = cubes.template(
        tiny.TIME,
        tiny.ROWS,
        tiny.COLS,
        ("smap", "lstm", "noah", "lsm2"),
        {"training_period": tiny.WINDOW},
    )
    cubes.create(path, template)
    shape = (len(tiny.TIME), template.sizes["y"], template.sizes["x"])
    values = {p: np.broadcast_to(v[:, None, None], shape) for p, v in tiny.products().items()}
    for block in cubes.blocks(template):
        cubes.write_block(
            path, block, {p: v[block.time, block.y, block.x] for p, v in values.items()}
        )
    return evaluate(cubes.open_cube(path), tiny.tiny_stations(), Options(tc_days=10))


def test_sites_are_counted_as_places_and_stations(evaluation, tmp_path):
    assert len(evaluation.sites) == 3  # S1 at 5 cm and at 50 cm, the dense pair at 5 cm
    assert locations(evaluation.sites) == {"dense": (1, 2), "sparse": (1, 1)}
    text = re.sub(r"\s+", " ", write_report(evaluation, tmp_path).read_text())
    assert "1 dense network(s) of 2 stations in all and 1 sparse station(s)" in text


def test_skill_by_year_keeps_whole_years_only(evaluation):
    # 2015-01..03 (90 days before the window) and 2016-12-31 (one day) are partial years.
    assert whole_years(evaluation) == [0, 1]


def test_site_titles_say_kind_place_and_depth(evaluation):
    titles = [site_title(site) for _, site in evaluation.sites.iterrows()]
    assert re.fullmatch(
        r"Station S1 at \d+\.\d\d° N, \d+\.\d\d° W: surface probes at 5 cm \(1 sensor\(s\)\)",
        next(t for t in titles if "S1" in t and "surface" in t),
    )
    assert any(t.startswith("Dense network at ") and "(2 sensor(s))" in t for t in titles)
    assert any("probes at 50 cm against the products' root-zone filter" in t for t in titles)
