"""The product: the Zarr cube layout, the registry of product kinds, fusion, climatology,
formats, and subsets exported as files."""
