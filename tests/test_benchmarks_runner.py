"""`make bench` entry point: every registered benchmark exists and declares its data needs honestly."""

from __future__ import annotations

import importlib.util

from benchmarks import run


def test_registered_benchmarks_exist_and_list(capsys):
    for bench in run.BENCHMARKS:
        assert importlib.util.find_spec(f"benchmarks.{bench.module or bench.name}") is not None, bench.name
        assert bench.needs_data == any("{data}" in a for a in bench.args), bench.name
    assert run.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert all(b.name in listing for b in run.BENCHMARKS)


def test_missing_data_is_skipped_with_a_reason(monkeypatch, capsys):
    monkeypatch.delenv("SCOREGEN_DATA", raising=False)
    assert run.main(["crysgen_perov5"]) == 0
    assert "skipped crysgen_perov5: no reference data" in capsys.readouterr().out


def test_commands_substitute_the_data_dir():
    bench = next(b for b in run.BENCHMARKS if b.name == "crysgen_perov5")
    cmd = run.command(bench, "/data")
    assert cmd[1:3] == ["-m", "benchmarks.crysgen_perov5"] and "/data" in cmd and "{data}" not in " ".join(cmd)
