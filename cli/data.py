"""`smapx world` and `smapx ingest ...`: the input datasets, from the twin world or real data."""

from pathlib import Path
from typing import Annotated

import typer

from model.errors import SmapxError
from model.sources import HOURLY_SOURCES, HourlySource

commands = typer.Typer()

ingest_app = typer.Typer(no_args_is_help=True, help="Read a data source into an input dataset.")
commands.add_typer(ingest_app, name="ingest")


@commands.command()
def world(
    out: Annotated[
        Path, typer.Option(help="World folder to write (input.zarr, truth.zarr, stations/)")
    ],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same world")] = 42,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD")] = "2000-01-01",
    end: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD")] = "2020-12-31",
    stride: Annotated[
        int | None,
        typer.Option(
            help="Keep every K-th grid row and column; 1 = all CONUS cells "
            "[default: 3 on the 36 km grid, 1 on finer grids]"
        ),
    ] = None,
    bbox: Annotated[
        str | None, typer.Option(help="Region as lon/lat west,south,east,north")
    ] = None,
    smap_noise: Annotated[float, typer.Option(help="SMAP-like retrieval noise, m3/m3")] = 0.02,
    grid: Annotated[
        str, typer.Option(help="EASE2 grid of the world's cells: 36km, 9km, 3km or 1km")
    ] = "36km",
):
    """Build the synthetic twin world: weather, a soil-water truth, Noah-like and second-LSM
    simulations, SMAP-like retrievals (from 2015-04-01) and in situ stations."""
    from model.grid import DEFAULT, named, parse_bbox
    from model.world import WorldConfig, build_world, summary, write_world
    from model.world.blocks import in_blocks, write_world_blocks

    on = named(grid)
    config = WorldConfig(
        seed=seed,
        start=start,
        end=end,
        stride=stride or (3 if on == DEFAULT else 1),
        bbox=parse_bbox(bbox) if bbox else None,
        smap_noise=smap_noise,
        grid=on.name,
    )
    if in_blocks(config):
        typer.echo(f"wrote {out}: {write_world_blocks(config, out, progress=True)}")
        return
    built = build_world(config, progress=True)
    write_world(built, out)
    typer.echo(f"wrote {out}: {summary(built)}")


@ingest_app.command("hydrodl")
def ingest_hydrodl(
    folder: Annotated[
        Path, typer.Argument(help="hydroDL database: crd.csv, const/, YYYY/ folders")
    ],
    out: Annotated[Path, typer.Option(help="Input dataset to write (Zarr)")],
):
    """Read a hydroDL CSV database (forcing, SMAP, static attributes) into an input dataset."""
    from model.dataset import write_input
    from model.sources.hydrodl import read_hydrodl

    ds = read_hydrodl(folder)
    write_input(ds, out)
    n_obs = int(ds["target"].notnull().sum())
    typer.echo(
        f"wrote {out}: {ds.sizes['cell']} cells, {ds.sizes['time']} days "
        f"({str(ds.time.values[0])[:10]}..{str(ds.time.values[-1])[:10]}), "
        f"{ds.sizes['variable']} forcing and {ds.sizes['static_variable']} static variables, "
        f"{n_obs} SMAP observations"
    )


RegionBox = Annotated[
    str | None,
    typer.Option(
        help="W,S,E,N in degrees: the cells of a new dataset (an existing one keeps its cells)"
    ),
]
RegionName = Annotated[str | None, typer.Option(help="A named region instead of --bbox: conus")]
FirstDay = Annotated[str | None, typer.Option(help="Read only files from this day, YYYY-MM-DD")]
LastDay = Annotated[str | None, typer.Option(help="Read only files up to this day, YYYY-MM-DD")]
GridName = Annotated[
    str | None,
    typer.Option(
        "--grid",
        help="EASE2 grid of a dataset this creates: 36km (SPL3SMP, the default) or 9km "
        "(SPL3SMP_E); an existing dataset keeps its own",
    ),
]
MinHours = Annotated[
    int, typer.Option(help="Fewest readable hours for a day to be written (e.g. 18 in operations)")
]


def _print_report(report) -> None:
    typer.echo("\n".join(report.lines()))


@ingest_app.command("smap")
def ingest_smap(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder of SMAP_L3_SM_P_YYYYMMDD_R*_*.h5 granules (SMAP_L3_SM_P_E_... at 9km)"
        ),
    ],
    out: Annotated[Path, typer.Option(help="Input dataset to create or add to (Zarr)")],
    bbox: RegionBox = None,
    region: RegionName = None,
    overpass: Annotated[str, typer.Option(help="am (6 am descending), pm, or both (mean)")] = "am",
    quality: Annotated[
        str,
        typer.Option(
            help="recommended (retrieval_qual_flag 0), relaxed (0 or 8), any (valid range only)"
        ),
    ] = "recommended",
    start: FirstDay = None,
    end: LastDay = None,
    grid: GridName = None,
):
    """SMAP L3 daily granules -> the SMAP target; creates the dataset with the cells of a region."""
    from model.grid import named
    from model.sources.ingest import ingest_smap as run
    from model.sources.ingest import parse_region
    from model.sources.smap import Overpass, Quality

    _print_report(
        run(
            folder,
            out,
            parse_region(bbox, region),
            _choice(Overpass, overpass),
            _choice(Quality, quality),
            start,
            end,
            on=named(grid) if grid else None,
        )
    )


def _choice(enum, value: str):
    try:
        return enum(value.lower())
    except ValueError:
        raise SmapxError(f"{value!r} is not one of {', '.join(e.value for e in enum)}") from None


def _hourly_command(source: HourlySource) -> None:
    """`smapx ingest <command>` for one registered NLDAS-2 hourly product."""

    def command(
        folder: Annotated[
            Path,
            typer.Argument(
                help=f"Folder of NLDAS_{'/'.join(source.products)}0125_H.*.nc4 hourly files"
            ),
        ],
        out: Annotated[Path, typer.Option(help="Input dataset to add to (Zarr)")],
        bbox: RegionBox = None,
        region: RegionName = None,
        start: FirstDay = None,
        end: LastDay = None,
        min_hours: MinHours = 1,
        grid: GridName = None,
    ):
        from model.grid import named
        from model.sources.ingest import ingest_nldas, parse_region

        box = parse_region(bbox, region)
        on = named(grid) if grid else None
        _print_report(ingest_nldas(folder, out, source.kind, box, start, end, min_hours, on=on))

    command.__doc__ = source.summary
    ingest_app.command(source.command)(command)


for _source in HOURLY_SOURCES.values():
    _hourly_command(_source)


@ingest_app.command("static")
def ingest_static(
    raster: Annotated[Path, typer.Argument(help="Single-band GeoTIFF in any CRS")],
    name: Annotated[str, typer.Option(help="Attribute name, e.g. sand, clay, ndvi, landcover")],
    out: Annotated[Path, typer.Option(help="Input dataset to add to (Zarr)")],
    categorical: Annotated[
        bool,
        typer.Option(
            "--categorical", help="Classes (land cover): the most common class, not the mean"
        ),
    ] = False,
):
    """A static attribute from a GeoTIFF, averaged (or its mode taken) over each cell."""
    from model.sources.ingest import ingest_static as run

    _print_report(run(raster, name, out, categorical))
