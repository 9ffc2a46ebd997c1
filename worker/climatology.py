"""A climatology job split over workers: planned and staged once at submission
(model.product.climatology.plan and begin), then one window group per task through
model.product.climatology.rank_window_group, as the in-process `smapx climatology` runs them, so
both write the same bytes; the task that writes the last group publishes the climatology.

A request is JSON: {"cube", "base"} (a local path made absolute, or an fsspec URL; base `A/B` or
null for the whole record) with the plan it was staged for, so every task ranks the same days
against the same base, and the same request sent again resumes the staged groups.
"""

import json
from functools import lru_cache
from pathlib import Path

from model.product import climatology
from model.product import cube as cubes


def checked(cube: str | Path, base: str | None = None) -> dict:
    """The request for the climatology of `cube` over `base`, planned (user errors raise here,
    before anything is staged or queued)."""
    store = str(cube) if "://" in str(cube) else str(Path(cube).expanduser().resolve())
    return {"cube": store, "base": base, "plan": climatology.plan(store, base)}


def prepare(request: dict) -> tuple[list[str], set[str]]:
    """Stage the request's climatology (or keep the one staged for the same plan); the names
    of its window groups, in task order, and of those already written."""
    template, groups = _context(request["cube"], json.dumps(request["plan"], sort_keys=True))
    done = climatology.begin(request["cube"], template, request["plan"])
    climatology.publish_when_complete(request["cube"], template, request["plan"])
    return [climatology.group_name(k) for k in range(len(groups))], done


@lru_cache(maxsize=2)
def _context(store: str, plan_json: str) -> tuple:
    """Per worker process and plan: the cube opened (its mask and days) and its window groups."""
    template = cubes.open_cube(store)
    return template, climatology.window_groups(template, json.loads(plan_json))


def run_group(request: dict, index: int) -> str:
    """Rank and write window group `index` (skipped if written), then publish the climatology
    if it was the last; the group's name."""
    template, _ = _context(request["cube"], json.dumps(request["plan"], sort_keys=True))
    name = climatology.rank_window_group(request["cube"], template, request["plan"], index)
    climatology.publish_when_complete(request["cube"], template, request["plan"])
    return name
