"""shared.cli_common: subcommand plumbing, common options, one-line user errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from shared.cli_common import (
    UserError,
    add_common_options,
    add_version_parser,
    build_parser,
    resolve_device,
    run_cli,
)
from shared.evaluation import MissingDependency
from shared.paths import resolve_data_dir


def add_echo_parser(subparsers):
    """A toy subcommand shaped like the domain ones: common options plus a handler."""
    parser = subparsers.add_parser("echo", help="print the parsed options")
    add_common_options(parser)
    parser.add_argument("--fail", choices=["value", "missing-file", "missing-dep", "bug", "interrupt"])

    def handler(args):
        if args.fail == "value":
            raise ValueError("steps must be positive,\n got -1")
        if args.fail == "missing-file":
            raise FileNotFoundError("checkpoint not found: /nowhere/model.pt")
        if args.fail == "missing-dep":
            raise MissingDependency("rdkit", extra="chem")
        if args.fail == "bug":
            raise ZeroDivisionError("a real bug")
        if args.fail == "interrupt":
            raise KeyboardInterrupt
        data_dir = resolve_data_dir(args.data_dir)
        print(f"device={resolve_device(args.device)} seed={args.seed} data={data_dir}")
        return 0

    parser.set_defaults(handler=handler)
    return parser


def toy_parser():
    return build_parser(
        "toy", "A toy CLI.", [add_echo_parser, lambda sub: add_version_parser(sub, "toy", "9.9")]
    )


def run(argv, capsys):
    code = run_cli(toy_parser(), argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_handler_receives_common_options(capsys, tmp_path):
    code, out, err = run(["echo", "--device", "cpu", "--seed", "7", "--data-dir", str(tmp_path)], capsys)
    assert (code, err) == (0, "")
    assert out.strip() == f"device=cpu seed=7 data={tmp_path}"


def test_defaults(capsys, monkeypatch):
    monkeypatch.delenv("SCOREGEN_DATA", raising=False)
    code, out, _ = run(["echo"], capsys)
    assert code == 0 and "seed=0 data=None" in out


def test_version_subcommand(capsys):
    code, out, _ = run(["version"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "toy 9.9" and f"torch {torch.__version__}" in lines
    assert any(line.startswith("cuda: ") for line in lines)


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(toy_parser(), ["--help"])
    assert info.value.code == 0
    assert "echo" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["echo", "--fail", "value"], "toy: error: steps must be positive, got -1"),
        (["echo", "--fail", "missing-file"], "toy: error: checkpoint not found: /nowhere/model.pt"),
        (["echo", "--fail", "missing-dep"], "toy: error: optional package 'rdkit' is not installed"),
        (["echo", "--data-dir", "/no/such/dir"], "toy: error: data directory /no/such/dir (from --data-dir)"),
        (["echo", "--seed", "abc"],
         "toy: error: argument --seed: expected a whole-number seed >= 0 and <= 9223372036854775807, got 'abc'"),
        (["echo", "--device", "tpu9"], "toy: error: --device 'tpu9' is not a device name"),
        (["nope"], "toy: error: argument COMMAND: invalid choice: 'nope'"),
        ([], "toy: error: the following arguments are required: COMMAND"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, expected, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(expected), err


def test_bugs_keep_their_traceback(capsys):
    with pytest.raises(ZeroDivisionError):
        run(["echo", "--fail", "bug"], capsys)


def test_debug_flag_reraises_user_errors(capsys):
    with pytest.raises(ValueError, match="steps must be positive"):
        run(["--debug", "echo", "--fail", "value"], capsys)


def test_interrupt_exit_code(capsys):
    code, _, err = run(["echo", "--fail", "interrupt"], capsys)
    assert code == 130 and err == "toy: interrupted\n"


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    torch.zeros(1, device=auto)  # the automatic choice is usable
    with pytest.raises(UserError, match="not a device name"):
        resolve_device("gpu!")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(UserError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_cli_common_imports_no_chemistry_library():
    code = (
        "import sys, shared.cli_common\n"
        "heavy = {'rdkit', 'pymatgen', 'ase', 'networkx', 'tblite', 'pyscf', 'chgnet', 'smact', 'matminer'}\n"
        "loaded = sorted(heavy & {m.split('.')[0] for m in sys.modules})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_overrides_are_accepted_after_options(capsys):
    """``train CONFIG --run-dir X a.b=1`` (the README's own example shape) and overrides on both sides."""

    def add_train(subparsers):
        parser = subparsers.add_parser("train")
        parser.add_argument("config")
        parser.add_argument("overrides", nargs="*")
        parser.add_argument("--run-dir")
        parser.set_defaults(handler=lambda args: print(args.config, args.run_dir, *args.overrides))
        return parser

    parser = build_parser("prog", "test", [add_train])
    assert run_cli(parser, ["train", "cfg", "a=1", "--run-dir", "runs/x", "b.c=2", "d=[1, 2]"]) == 0
    assert capsys.readouterr().out.split() == ["cfg", "runs/x", "a=1", "b.c=2", "d=[1,", "2]"]
    # anything else that argparse does not know is still an error, and a subcommand without overrides refuses them
    assert run_cli(parser, ["train", "cfg", "--run-dir", "x", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    echo = build_parser("prog", "test", [add_echo_parser])
    assert run_cli(echo, ["echo", "a=1"]) == 2
    assert "unrecognized arguments: a=1" in capsys.readouterr().err


def add_threads_parser(subparsers):
    """Reports, from inside the handler, the thread settings that run_cli applied."""
    parser = subparsers.add_parser("threads")
    add_common_options(parser, device=False, seed=False, data_dir=False)

    def handler(args):
        import os

        print(torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS"),
              args.no_progress)

    parser.set_defaults(handler=handler)
    return parser


def test_threads_are_applied_for_the_command_and_restored(capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    parser = build_parser("toy", "test", [add_threads_parser])
    assert run_cli(parser, ["threads", "--threads", "3", "--no-progress"]) == 0
    assert capsys.readouterr().out.split() == ["3", "3", "3", "True"]
    assert torch.get_num_threads() == before
    import os

    assert os.environ["OMP_NUM_THREADS"] == "1" and "MKL_NUM_THREADS" not in os.environ
    # without --threads nothing is touched: torch keeps its own default
    assert run_cli(parser, ["threads"]) == 0
    assert capsys.readouterr().out.split() == [str(before), "1", "None", "False"]


@pytest.mark.parametrize(("value", "expected"), [
    ("0", "argument --threads: the number of threads must be >= 1, got 0"),
    ("-2", "argument --threads: the number of threads must be >= 1, got -2"),
    ("many", "argument --threads: expected a whole number of threads >= 1, got 'many'"),
])
def test_bad_thread_counts_are_one_line_errors(value, expected, capsys):
    parser = build_parser("toy", "test", [add_threads_parser])
    assert run_cli(parser, ["threads", f"--threads={value}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"toy: error: {expected}"), err


def test_common_options_leave_an_existing_option_alone(capsys):
    """A command that defines --no-progress (or --seed) itself keeps its own; the rest are still added."""

    def add_own(subparsers):
        parser = subparsers.add_parser("own")
        parser.add_argument("--no-progress", action="store_true", help="OWN HELP")
        parser.add_argument("--seed", type=int, default=42)
        add_common_options(parser)
        parser.set_defaults(handler=lambda args: print(args.seed, args.no_progress, args.threads, args.device))
        return parser

    parser = build_parser("toy", "test", [add_own])
    assert run_cli(parser, ["own", "--no-progress", "--threads", "1"]) == 0
    assert capsys.readouterr().out.split() == ["42", "True", "1", "auto"]
    own = parser._subparsers._group_actions[0].choices["own"]
    assert [a.help for a in own._actions if "--no-progress" in a.option_strings] == ["OWN HELP"]


def test_common_options_can_be_left_out(capsys):
    def add_bare(subparsers):
        parser = subparsers.add_parser("bare")
        add_common_options(parser, device=False, seed=False, data_dir=False, threads=False, progress=False)
        parser.set_defaults(handler=lambda args: print(sorted(k for k in vars(args) if k != "handler")))
        return parser

    parser = build_parser("toy", "test", [add_bare])
    assert run_cli(parser, ["bare"]) == 0
    assert capsys.readouterr().out.strip() == "['command', 'debug']"
    assert run_cli(parser, ["bare", "--threads", "2"]) == 2
    assert "unrecognized arguments: --threads 2" in capsys.readouterr().err
