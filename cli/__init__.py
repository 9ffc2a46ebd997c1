"""The `smapx` command line: one entry point for every job, assembling the three layers."""
