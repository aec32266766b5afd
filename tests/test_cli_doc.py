"""``docs/cli.md`` is generated from the parser and must match it."""

from __future__ import annotations

import argparse
from pathlib import Path

from motionmae.cli import build_parser
from motionmae.cli_doc import GENERATOR, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date():
    assert DOC.read_text() == render(build_parser()), (
        f"docs/cli.md is out of date with motionmae.cli.build_parser(): run `{GENERATOR}`")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_and_option_is_documented():
    parser = build_parser()
    text = render(parser)
    for name, command in _subcommands(parser).items():
        section = text.split(f"\n## motionmae {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in command._actions:
            if action.help is argparse.SUPPRESS:  # --debug, --verbose: listed once, on top
                continue
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in section, (name, flag)
            if not action.option_strings:
                assert f"`{action.metavar or action.dest.upper()}`" in section, (name, action)


def test_synopsis_marks_required_optional_and_exclusive_options():
    parser = argparse.ArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run it")
    run.add_argument("video")
    run.add_argument("--out", required=True)
    run.add_argument("--kind", choices=["a", "b"], default="a")
    group = run.add_mutually_exclusive_group(required=True)
    group.add_argument("--steps", type=int, metavar="N")
    group.add_argument("--epochs", type=int, metavar="N")
    run.add_argument("--fast", action="store_true")
    text = render(parser)
    assert "tool run VIDEO --out OUT [--kind {a,b}] (--steps N | --epochs N) [--fast]" in text
    assert "| `--kind` `{a,b}` | `a` |" in text  # a default the help does not state is shown
    assert "| `--fast` |  |" in text  # flags have no default column


def test_machine_dependent_defaults_stay_out_of_the_doc(monkeypatch):
    # `prepare --workers` defaults to the CPU count; its help says so, so the value is not
    # printed and the doc is the same on every machine.
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    three = render(build_parser())
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert render(build_parser()) == three


def test_defaults_the_help_states_are_the_configs():
    """The training commands' help names defaults by hand (the parser imports no config):
    they must be the config's."""
    from motionmae.config import FinetuneConfig, PretrainConfig
    from motionmae.training_config import RunConfig

    commands = _subcommands(build_parser())
    for name, cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig)):
        config = cls()
        helps = {a.option_strings[0]: a.help for a in commands[name]._actions
                 if a.option_strings}
        assert f"(default {config.run.batch_size})" in helps["--batch-size"]
        assert config.run.steps is None and config.run.epochs is None
        assert f"(default {RunConfig.DEFAULT_STEPS} when" in helps["--steps"]
    pretrain, config = commands["pretrain"], PretrainConfig()
    helps = {a.option_strings[0]: a.help for a in pretrain._actions if a.option_strings}
    assert f"(default {config.model.size})" in helps["--model"]
    assert f"(default {config.data.frames})" in helps["--frames"]
    assert f"(default {config.data.size})" in helps["--size"]
