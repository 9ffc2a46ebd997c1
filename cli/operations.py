"""`smapx demo` and `smapx settings`."""

from pathlib import Path
from typing import Annotated

import typer

commands = typer.Typer()


@commands.command()
def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the world, model, cube and report [default: SMAPX_DATA_DIR/demo]"
        ),
    ] = None,
    bbox: Annotated[
        str, typer.Option(help="World region, west,south,east,north; 'conus' for all")
    ] = "-104,33,-92,41",
    stride: Annotated[int, typer.Option(help="Keep every K-th grid row/column of the region")] = 1,
    workers: Annotated[
        int, typer.Option(help="Worker processes for the extension; 0 = in-process")
    ] = 2,
    max_epochs: Annotated[int, typer.Option(help="Upper bound on training epochs")] = 20,
    port: Annotated[int, typer.Option(help="Port to serve the cube on at the end")] = 8000,
    serve: Annotated[bool, typer.Option(help="Serve the cube and web map at the end")] = True,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Serve a cube that ends LIVE_DAYS before the world does and grow it a day "
            "every LIVE_SECONDS while serving: the map moves forward",
        ),
    ] = False,
    live_days: Annotated[int, typer.Option(help="Days a --live demo grows")] = 5,
    live_seconds: Annotated[float, typer.Option(help="Seconds between two days of growth")] = 10.0,
):
    """The whole product on the built-in twin world: build it, train, extend 2000-2020, score,
    evaluate against stations, and serve the cube with its web map."""
    from cli.demo import DemoConfig, run
    from model.grid import parse_bbox
    from model.settings import get_settings

    region = parse_bbox(bbox)
    run(
        DemoConfig(
            out=out or get_settings().data_dir / "demo",
            bbox=region,
            stride=stride,
            workers=workers,
            max_epochs=max_epochs,
            port=port,
            serve=serve,
            live_days=live_days if live else 0,
            live_seconds=live_seconds,
        )
    )


@commands.command()
def settings(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The README's table of every setting and default")
    ] = False,
):
    """Every setting with the value this process sees (SMAPX_* environment variables)."""
    from model.settings import Settings, get_settings, markdown_table

    if markdown:
        typer.echo(markdown_table())
        return
    from worker.pool import redis_in_use

    current = get_settings()
    for name in Settings.model_fields:
        value = redis_in_use() if name == "redis_url" else getattr(current, name)
        typer.echo(f"SMAPX_{name.upper()}={'unset' if value is None else value}")
