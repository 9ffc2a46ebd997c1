"""`smapx evaluate`: the cube against in situ probes."""

from pathlib import Path
from typing import Annotated

import typer

commands = typer.Typer()


@commands.command()
def evaluate(
    cube: Annotated[Path, typer.Option(help="Product cube (Zarr)")],
    stations: Annotated[
        Path,
        typer.Option(
            help="ISMN archive (zip or folder), station CSV, or a twin world (W or W/stations)"
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Report folder to write (index.html, summary.json, ...)")
    ],
    training_period: Annotated[
        str | None,
        typer.Option(
            help="SMAP training window YYYY-MM-DD..YYYY-MM-DD; default: the cube's attribute"
        ),
    ] = None,
    flags: Annotated[str, typer.Option(help="ISMN quality flags to keep, comma-separated")] = "G",
    min_count: Annotated[int, typer.Option(help="Samples a day needs for a daily mean")] = 12,
    tc_days: Annotated[
        float | None,
        typer.Option(
            help="Root-zone filter time (days); default: fitted per site in the training window"
        ),
    ] = None,
    min_pairs: Annotated[int, typer.Option(help="Days a site needs in a period to be scored")] = 30,
):
    """Evaluate a cube against in situ probes: metrics by period, fusion weights, the paper's
    claims, and a report of figures (OUT/index.html)."""
    import logging

    from model.evaluation.evaluate import Options
    from model.evaluation.report import run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    options = Options(
        training_period=training_period, tc_days=tc_days, min_pairs=min_pairs, progress=True
    )
    result = run(
        cube, stations, out, options, tuple(f.strip() for f in flags.split(",")), min_count
    )
    n = result.summary["n_sites"]
    typer.echo(
        f"wrote {out / 'index.html'}: {n['surface']} surface and {n['rootzone']} root-zone "
        f"sites, {len(result.problems)} problem(s)"
    )
    for name, claim in result.summary["claims"].items():
        verdict = {True: "holds", False: "FAILS", None: "undecided"}[claim["holds"]]
        typer.echo(
            f"  {name}: {verdict}" + (f" ({claim['finding']})" if claim.get("finding") else "")
        )
