"""Readers of real data sources (hydroDL CSV, SMAP L3, NLDAS-2, GeoTIFF) and their ingest into
an input dataset."""
