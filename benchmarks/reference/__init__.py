"""Frozen earlier implementations that benchmarks and tests compare the current code against."""
