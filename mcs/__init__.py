"""The `mcs` command line: library commands (compress, decode, inspect, train) and service commands."""
