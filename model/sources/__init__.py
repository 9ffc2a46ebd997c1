"""Readers of real data sources (hydroDL CSV, SMAP L3, NLDAS-2, GeoTIFF) and their ingest into
an input dataset. The hourly NLDAS-2 products are registered here, as data, so that the command
line builds one `smapx ingest` command per product without importing the readers."""

from dataclasses import dataclass


@dataclass(frozen=True)
class HourlySource:
    """An NLDAS-2 hourly product that `smapx ingest <command>` reads into an input dataset."""

    command: str
    kind: str  # what it becomes: "forcing", or the soil-moisture variable's name
    products: tuple[str, ...]  # accepted file products: NLDAS_<PRODUCT>0125_H.*
    summary: str


HOURLY_SOURCES = {
    source.kind: source
    for source in (
        HourlySource(
            "nldas",
            "forcing",
            ("FORA",),
            "NLDAS-2 hourly forcing -> daily means (precipitation as mean rate) on the cells.",
        ),
        HourlySource(
            "noah",
            "noah",
            ("NOAH",),
            "NLDAS-2 Noah soil moisture -> daily m3/m3 as `noah` (0-10 cm) and deeper layers.",
        ),
        HourlySource(
            "lsm2",
            "lsm2",
            ("NOAH", "MOS", "VIC"),
            "A second land-surface model (Mosaic, VIC or Noah files) -> daily m3/m3 as `lsm2`.",
        ),
    )
}
