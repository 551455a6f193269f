"""Benchmarks: scripts that measure scoregen and write benchmarks/results/<name>.{json,md} via harness."""
