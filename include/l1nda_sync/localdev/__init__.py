"""Local stand-ins for production parts (embedded PostgreSQL, ...), used by tests, the demo and benchmarks."""
