"""Load generation and local benchmarks that speak only PROTOCOL.md (see bench/README.md)."""
