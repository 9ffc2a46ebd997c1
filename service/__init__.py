"""smapx front ends: the HTTP service, the web map and the command line."""
