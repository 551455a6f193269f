"""Every subcommand of the three programs takes --threads N and --no-progress, and rejects --threads 0 in one line."""

from __future__ import annotations

import pytest

from shared.cli_common import build_parser

PROGRAMS = ["graphgen", "molgen", "crysgen"]


def _cli(name):
    import importlib

    return importlib.import_module(f"{name}.cli")


def _subcommands(cli):
    parser = build_parser(cli.PROG, cli.DESCRIPTION, cli.SUBCOMMANDS)
    return parser._subparsers._group_actions[0].choices


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_command_has_threads_and_no_progress(program):
    commands = _subcommands(_cli(program))
    assert len(commands) >= 4
    for name, parser in commands.items():
        if name == "version":
            continue
        options = parser._option_string_actions
        assert "--threads" in options and "--no-progress" in options, f"{program} {name}"


@pytest.mark.parametrize("program", PROGRAMS)
def test_threads_zero_is_a_one_line_error(program, tmp_path, capsys):
    cli = _cli(program)
    assert cli.main(["sample", "--threads", "0", "--out", str(tmp_path / "x"), "-n", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"{program}: error: argument --threads: the number of threads must be >= 1, got 0")
