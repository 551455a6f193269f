"""One CLI vocabulary across the domains: the same option names mean the same thing in graphgen, molgen, crysgen."""

import argparse

import pytest

from shared.cli_common import build_parser


def _subparser(domain: str, command: str) -> argparse.ArgumentParser:
    module = __import__(f"{domain}.cli", fromlist=["PROG"])
    parser = build_parser(module.PROG, module.DESCRIPTION, module.SUBCOMMANDS)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return parser._option_string_actions[flag]


@pytest.mark.parametrize("domain", ["graphgen", "molgen", "crysgen"])
def test_sample_speaks_the_same_words(domain):
    sample = _subparser(domain, "sample")
    for flag in ("-n", "--num", "--out", "--steps", "--seed", "--batch-size", "--device", "--no-progress",
                 "--precision"):
        assert flag in sample._option_string_actions, f"{domain} sample lacks {flag}"
    assert _option(sample, "-n").default == 100 and not _option(sample, "-n").required
    assert set(_option(sample, "--precision").choices) == {"fp32", "bf16", "auto"}


@pytest.mark.parametrize("domain", ["molgen", "crysgen"])
def test_conditioning_is_condition_and_guidance_scale(domain):
    sample = _subparser(domain, "sample")
    condition, scale = _option(sample, "--condition"), _option(sample, "--guidance-scale")
    assert isinstance(condition, argparse._AppendAction) and scale.default == 1.0


def test_crysgen_keeps_its_older_words_as_aliases():
    sample = _subparser("crysgen", "sample")
    assert _option(sample, "--guidance") is _option(sample, "--condition")
    assert _option(sample, "--scale") is _option(sample, "--guidance-scale")
    args = sample.parse_args(["--out", "o", "--condition", "heat_ref=-0.5", "--guidance", "x=1",
                              "--guidance-scale", "2"])
    assert args.guidance == ["heat_ref=-0.5", "x=1"] and args.scale == 2.0


@pytest.mark.parametrize("domain,command", [("molgen", "dft"), ("graphgen", "dft"), ("crysgen", "relax")])
def test_hook_caches_are_called_cache(domain, command):
    assert "--cache" in _subparser(domain, command)._option_string_actions
