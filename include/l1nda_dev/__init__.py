"""Development tools kept out of the runtime package and the image: the demo, the benchmarks, an embedded PostgreSQL.

Tests and `make demo` / `make bench` / `make airflow` use them; the Docker build context leaves `include/l1nda_dev/`
out (.dockerignore), so nothing here ships.
"""
