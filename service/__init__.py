"""The smapx HTTP service: series, tiles, fused products, jobs, Zarr access and the web map."""
