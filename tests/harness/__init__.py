"""Test harness: a private Postgres cluster per session, a fresh database per test, dbt
run in-process. The fixtures that wrap these live in ``tests/conftest.py``."""
