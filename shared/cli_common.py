"""Shared command-line machinery for the ``graphgen``, ``molgen`` and ``crysgen`` programs.

A domain CLI is a list of ``add_<name>_parser(subparsers)`` functions; each adds one subcommand and sets its
handler with ``parser.set_defaults(handler=fn)``, where ``fn(args) -> int | None``. ``run_cli`` parses, calls the
handler with ``--threads`` applied, and turns user errors (bad options, missing files, absent optional packages)
into one line on stderr and exit code 2; ``--debug`` shows the full traceback instead. Imports no chemistry
library.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch

from shared.evaluation import MissingDependency
from shared.io import exclusive_output

__all__ = [
    "USER_ERRORS",
    "finite_float",
    "fraction",
    "os_error_line",
    "nonnegative_float",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "seed_int",
    "UserError",
    "add_campaign_parser",
    "add_strict_option",
    "batch_exit_code",
    "batch_summary",
    "add_common_options",
    "add_version_parser",
    "build_parser",
    "packaged_config",
    "device_report",
    "resolve_device",
    "run_cli",
    "thread_limit",
]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake in what the user asked for; printed as one line, exit code 2."""


# Library code signals bad input with ValueError/FileNotFoundError (project convention), so these are the
# user's to fix; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, FileNotFoundError, MissingDependency)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so usage errors are one line too."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see '{self.prog} --help')")


AddParser = Callable[[argparse._SubParsersAction], argparse.ArgumentParser]


def build_parser(prog: str, description: str, subcommands: Iterable[AddParser]) -> argparse.ArgumentParser:
    """A parser with ``--debug`` and one required subcommand per ``add_<name>_parser`` function."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in subcommands:
        add(subparsers)
    return parser


def add_common_options(
    parser: argparse.ArgumentParser, *, device: bool = True, seed: bool = True, data_dir: bool = True,
    threads: bool = True, progress: bool = True,
) -> argparse.ArgumentParser:
    """``--device`` (auto|cpu|cuda[:N]|mps), ``--seed`` (int, default 0), ``--data-dir`` (else $SCOREGEN_DATA),
    ``--threads N`` (CPU threads, applied by ``run_cli``) and ``--no-progress``.

    An option the parser already defines is left as it is (argparse refuses duplicates), so a command that
    declares its own ``--no-progress`` keeps it and still gets the others.
    """
    if device:
        _add_once(parser, "--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    if seed:
        _add_once(parser, "--seed", type=seed_int, default=0, help="random seed (default 0)")
    if data_dir:
        _add_once(parser, "--data-dir", default=None, help="reference data directory (default: $SCOREGEN_DATA)")
    if threads:
        _add_once(parser, "--threads", type=_thread_count, default=None, metavar="N",
                  help="CPU threads for torch, and for OpenMP/MKL in worker processes and libraries started "
                       "later (default: torch's own choice)")
    if progress:
        _add_once(parser, "--no-progress", action="store_true", help="no progress bar")
    return parser


def _add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    if flag not in parser._option_string_actions:  # argparse keeps no public view of the options it has
        parser.add_argument(flag, **kwargs)


def _number_type(kind: type, minimum: float | None = None, strict: bool = False, maximum: float | None = None,
                 what: str = "") -> Callable[[str], float]:
    """An argparse type: a finite ``kind`` (int or float) within bounds; argparse names the option in the error."""
    low = "" if minimum is None else (f" > {minimum:g}" if strict else f" >= {minimum:g}")
    bound = "" if maximum is None else (f"{maximum:d}" if kind is int else f"{maximum:g}")
    high = "" if maximum is None else (" and" if low else "") + f" <= {bound}"
    noun = what or ("a whole number" if kind is int else "a finite number")

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {noun}{low}{high}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {noun}{low}{high}, got {text!r}")
        if (minimum is not None and (value <= minimum if strict else value < minimum)) or \
                (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {noun}{low}{high}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__}{low}{high}".replace(" ", "")
    return parse


# argparse types for numeric options: every numeric option is checked where it is parsed (no NaN, inf or
# out-of-range value reaches a sampler, and 0 never silently means "the default")
positive_int = _number_type(int, 1)
nonnegative_int = _number_type(int, 0)
finite_float = _number_type(float)
positive_float = _number_type(float, 0.0, strict=True)
nonnegative_float = _number_type(float, 0.0)
fraction = _number_type(float, 0.0, maximum=1.0)
# torch.manual_seed takes 64-bit seeds; numpy's take 32 bits more than enough: one range for every seed option
seed_int = _number_type(int, 0, maximum=2**63 - 1, what="a whole-number seed")


def _thread_count(text: str) -> int:
    """argparse type of ``--threads``: a whole number >= 1 (0 or -1 would silently mean something else)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the number of threads must be >= 1, got {value}")
    return value


# OpenMP and MKL read these when their thread pool starts: in worker processes (they inherit the environment)
# and in libraries first used after parsing (xTB, PySCF). torch's own pool is set directly.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def thread_limit(n: int | None) -> Iterator[None]:
    """Run the body with ``n`` CPU threads (None: change nothing); the previous settings come back afterwards,
    so in-process callers (tests, notebooks) keep theirs."""
    if n is None:
        yield
        return
    before_torch = torch.get_num_threads()
    before_env = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    torch.set_num_threads(n)
    os.environ.update({name: str(n) for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        for name, value in before_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def add_campaign_parser(subparsers: argparse._SubParsersAction, prog: str, help: str, run: Callable,
                        *, data_dir: bool = False) -> argparse.ArgumentParser:
    """The ``campaign`` subcommand every domain has: ``PROG campaign SPEC --out DIR [k=v ...]`` runs or resumes a
    ``shared.campaign`` campaign, ``PROG campaign status DIR`` reports on one. ``run(args, spec)`` runs it for the
    domain and returns ``(result, outputs)``, ``outputs`` naming the domain's files for the closing line."""
    parser = subparsers.add_parser(
        "campaign", help=help,
        description=f"{prog} campaign SPEC.yaml --out DIR [key=value ...] runs (or resumes) the campaign in DIR; "
                    f"{prog} campaign status DIR shows how far it got. See {prog}.campaign for the spec keys.")
    parser.add_argument("spec", help="campaign YAML spec, or 'status'")
    parser.add_argument("overrides", nargs="*", help="spec overrides key=value (with 'status': the DIR)")
    parser.add_argument("--out", default=None, help="campaign directory (outputs, shards, caches)")
    add_common_options(parser, device=False, seed=False, data_dir=data_dir)
    parser.set_defaults(handler=lambda args: _campaign_command(args, prog, run), output_lock="out")
    return parser


def _campaign_command(args: argparse.Namespace, prog: str, run: Callable) -> int:
    from shared.campaign import campaign_status, funnel, load_spec
    from shared.paths import require_file

    if args.spec == "status":
        if len(args.overrides) != 1:
            raise UserError(f"usage: {prog} campaign status DIR")
        print(campaign_status(args.overrides[0]))
        return 0
    if args.out is None:
        raise UserError("--out DIR is required: the campaign's outputs and its resume state live there")
    spec = load_spec(require_file(args.spec, "campaign spec"), args.overrides)
    result, outputs = run(args, spec)
    for stage, count in funnel(spec, result.candidates):
        print(f"{stage:<24} {count}")
    for cand in result.top:
        label = cand["values"].get("smiles") or cand["values"].get("formula", "")
        print(f"#{cand['rank']:<3} {cand['id']}  {label}  {cand.get('rank_value', 0):.4g}")
    print(f"wrote {result.out_dir}/candidates.csv, {outputs}, report.md/.html "
          f"({result.shards_computed} of {spec.n_shards} shards computed now)")
    return 0


def add_strict_option(parser: argparse.ArgumentParser) -> None:
    """``--strict`` for batch commands (DFT, relaxation): see :func:`batch_exit_code`."""
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when any item of the batch failed (default: 0 once the batch ran; failures "
                             "are in the table and the summary)")


def batch_summary(results: Sequence, skipped: int = 0) -> str:
    """``"7/10 ok (2 from cache); failed: 2 open shell, 1 refused geometry; 1 unreadable skipped"``: failures are
    counted by the class their reason starts with (the text before the first colon)."""
    from collections import Counter

    ok = sum(bool(r.ok) for r in results)
    failed = Counter(failure_class(r.reason) for r in results if not r.ok)
    text = f"{ok}/{len(results)} ok ({sum(bool(r.cached) for r in results)} from cache"
    if failed:
        text += "; failed: " + ", ".join(f"{n} {why}" for why, n in sorted(failed.items()))
    if skipped:
        text += f"; {skipped} unreadable skipped"
    return text + ")"


def failure_class(reason: str | None) -> str:
    """``"OpenShellMolecule: open shell: 1 unpaired electron"`` -> ``"open shell"``: the text before the first
    colon, after the exception name a hook's failure carries in front (``shared.hooks``)."""
    text = (reason or "failed").strip()
    head, sep, rest = text.partition(":")
    if sep and ":" in rest and head.isidentifier() and head[:1].isupper():
        text = rest.strip()
    return text.split(":")[0].strip() or "failed"


def batch_exit_code(results: Sequence, strict: bool = False) -> int:
    """One convention for batch commands in every domain: 0 when the batch ran (per-item failures are results,
    reported in the outputs), 1 with ``--strict`` when any item failed or when nothing succeeded at all."""
    ok = sum(bool(r.ok) for r in results)
    if results and ok == 0:
        return 1
    return 1 if strict and ok < len(results) else 0


def packaged_config(name: str, folder: str | os.PathLike) -> Path:
    """A config file path, or the name of a YAML config shipped in ``folder`` (a domain's ``configs/``)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = Path(folder) / f"{path.stem}.yaml"
    if packaged.is_file():
        return packaged
    names = sorted(p.stem for p in Path(folder).glob("*.yaml"))
    raise FileNotFoundError(f"config {name!r} is neither a file nor a packaged config ({', '.join(names)})")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``--device``: ``auto`` picks cuda, then mps, then cpu; unavailable ones are an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r} is not a device name (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {name} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {name} requested but only {count} CUDA device(s) are visible")
    elif device.type == "mps" and not _mps_available():
        raise UserError(f"--device {name} requested but MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name} is not supported (use auto, cpu, cuda, cuda:N or mps)")
    return device


def device_report() -> list[str]:
    """Human-readable lines on which accelerators torch can use here."""
    lines = []
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        lines.append(f"cuda: available ({torch.cuda.device_count()} device(s): {names})")
    else:
        lines.append("cuda: not available")
    lines.append(f"mps: {'available' if _mps_available() else 'not available'}")
    lines.append(f"default device (--device auto): {resolve_device('auto')}")
    return lines


def add_version_parser(
    subparsers: argparse._SubParsersAction, package: str, version: str
) -> argparse.ArgumentParser:
    """The ``version`` subcommand: package and torch versions, device availability."""
    parser = subparsers.add_parser("version", help="print versions and available devices")

    def show(args: argparse.Namespace) -> int:
        print(f"{package} {version}")
        print(f"python {sys.version.split()[0]}")
        print(f"torch {torch.__version__}")
        for line in device_report():
            print(line)
        return 0

    parser.set_defaults(handler=show)
    return parser


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen handler; the process exit code to use.

    ``--help`` still exits through SystemExit(0) as argparse does.
    """
    debug = "--debug" in (sys.argv[1:] if argv is None else argv) or os.environ.get("SCOREGEN_DEBUG") == "1"
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # dotted key=value overrides may follow options (argparse alone only takes them before the first one)
            if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
                args.overrides = [*(args.overrides or []), *extra]
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
        handler = getattr(args, "handler", None)
        if handler is None:  # a subcommand added without set_defaults(handler=...) is a programming error
            raise RuntimeError(f"subcommand {args.command!r} has no handler")
        # a command that names its output in ``set_defaults(output_lock=<option>)`` holds that output exclusively
        lock = getattr(args, "output_lock", None)
        target = getattr(args, lock, None) if lock else None
        if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 holds the run's output for all its ranks
            target = None
        guard = exclusive_output(target, f"{parser.prog} {args.command}") if target else contextlib.nullcontext()
        with thread_limit(getattr(args, "threads", None)), guard:
            code = handler(args)
        return 0 if code is None else int(code)
    except USER_ERRORS as exc:
        if debug:
            raise
        _close_progress_bars()
        print(f"{parser.prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # the machine's faults: read-only, disk full, a directory where a file goes, ...
        if debug:
            raise
        _close_progress_bars()
        print(f"{parser.prog}: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        _close_progress_bars()
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


_OS_HINTS = {errno.ENOSPC: "free some space or write elsewhere", errno.EDQUOT: "free some space or write elsewhere",
             errno.EROFS: "choose a writable location", errno.EACCES: "choose a location you may write to",
             errno.EPERM: "choose a location you may write to"}


def os_error_line(exc: OSError) -> str:
    """One line naming the path(s) and the system's reason, with what to do for the common cases."""
    reason = exc.strerror or _one_line(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p]
    if exc.errno in (errno.EEXIST, errno.ENOTDIR) and paths and Path(paths[0]).is_file():
        reason = "a file is in the way where a folder is needed"  # mkdir's "File exists" says it backwards
    line = f"{' -> '.join(paths)}: {reason}" if paths else _one_line(exc)
    hint = _OS_HINTS.get(exc.errno)
    if hint and paths and Path(paths[0]).expanduser().resolve().is_relative_to(Path.home() / ".cache"):
        hint += " (caches: set $SCOREGEN_CACHE to a writable folder)"
    return f"{line} ({hint})" if hint else line


def _close_progress_bars() -> None:
    """End the lines of progress bars a stopped computation left open, so the message starts on its own line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    # FileNotFoundError from open() carries its path separately
    filename = getattr(exc, "filename", None)
    if filename and str(filename) not in message:
        message = f"{message}: {filename}"
    return message


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
