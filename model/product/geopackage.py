"""Polygons with properties as an OGC GeoPackage (1.3), the vector file GIS users download: one
SQLite file holding a feature table in EPSG:4326 with the tables every reader looks for
(gpkg_spatial_ref_sys, gpkg_contents, gpkg_geometry_columns). Geometries are GeoPackage binary:
a header (magic, version, flags, SRS id, envelope) before little-endian WKB."""

import sqlite3
import struct
import tempfile
from pathlib import Path

import shapely
from shapely.geometry.base import BaseGeometry

APPLICATION_ID = 0x47504B47  # "GPKG"
USER_VERSION = 10300
WGS84 = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
)
CORE = """
CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
  organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL,
  definition TEXT NOT NULL, description TEXT);
CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
  identifier TEXT UNIQUE, description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE,
  srs_id INTEGER REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
  geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL,
  m TINYINT NOT NULL, CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name));
"""
SQL_TYPES = {int: "INTEGER", float: "DOUBLE", str: "TEXT"}


def geometry_blob(geometry: BaseGeometry | None) -> bytes | None:
    """GeoPackage binary of a geometry in EPSG:4326 (little endian, xy envelope)."""
    if geometry is None:
        return None
    flags = 0b0000_0011  # envelope [minx, maxx, miny, maxy], little endian
    west, south, east, north = geometry.bounds
    header = b"GP" + struct.pack("<BBi4d", 0, flags, 4326, west, east, south, north)
    return header + shapely.to_wkb(geometry, byte_order=1)


def write(table: str, features: list[tuple[dict, BaseGeometry | None]]) -> bytes:
    """A GeoPackage of one MultiPolygon feature table named `table`; each feature's properties
    (str, int, float or None) become columns."""
    columns = {}
    for properties, _ in features:
        for key, value in properties.items():
            if value is not None:
                columns.setdefault(key, SQL_TYPES[type(value)])
    present = [g for _, g in features if g is not None]
    bounds = shapely.total_bounds(present) if present else [None] * 4
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.gpkg"
        db = sqlite3.connect(path)
        try:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {USER_VERSION}")
            db.executescript(CORE)
            db.executemany(
                "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
                [
                    ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
                    ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
                    ("WGS 84 geodetic", 4326, "EPSG", 4326, WGS84, "longitude/latitude"),
                ],
            )
            defs = "".join(f', "{name}" {kind}' for name, kind in columns.items())
            db.execute(
                f'CREATE TABLE "{table}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom MULTIPOLYGON'
                f"{defs})"
            )
            db.execute(
                "INSERT INTO gpkg_contents (table_name, data_type, identifier, min_x, min_y, "
                "max_x, max_y, srs_id) VALUES (?, 'features', ?, ?, ?, ?, ?, 4326)",
                (table, table, *(None if v is None else float(v) for v in bounds)),
            )
            db.execute(
                "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'MULTIPOLYGON', 4326, 0, 0)",
                (table,),
            )
            names = ", ".join(f'"{name}"' for name in columns)
            marks = ", ".join("?" for _ in columns)
            db.executemany(
                f'INSERT INTO "{table}" (geom, {names}) VALUES (?, {marks})',
                [
                    (geometry_blob(multi(g)), *(p.get(name) for name in columns))
                    for p, g in features
                ],
            )
            db.commit()
        finally:
            db.close()
        return path.read_bytes()


def multi(geometry: BaseGeometry | None) -> BaseGeometry | None:
    """The polygons of a geometry as one MultiPolygon, the column's declared type; None if it
    has none."""
    if geometry is None:
        return None
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type == "Polygon"]
    return shapely.multipolygons(parts) if parts else None
