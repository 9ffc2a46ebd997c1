"""The product: the Zarr cube layout, extension into it, fusion, and subsets exported as files."""
