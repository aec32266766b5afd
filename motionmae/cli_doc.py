"""The command-line reference (``docs/cli.md``), generated from :func:`motionmae.cli.build_parser`.

``python -m motionmae.cli_doc > docs/cli.md`` writes it; ``tests/test_cli_doc.py`` fails when
the file and the parser disagree. The text depends only on the parser: synopses are built
here rather than by argparse's usage formatter (which wraps to the terminal width and
changes between Python versions), and a default is shown only when the option's help does
not state it itself (``prepare --workers`` defaults to the machine's CPU count).
"""

from __future__ import annotations

import argparse
import sys

GENERATOR = "python -m motionmae.cli_doc > docs/cli.md"
WIDTH = 100  # of the synopsis lines


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def _invocation(action: argparse.Action) -> str:
    """How the argument is written: ``VIDEO``, ``--out OUT``, ``--resume``."""
    if not action.option_strings:
        return _metavar(action)
    flag = max(action.option_strings, key=len)  # --verbose rather than -v
    return flag if action.nargs == 0 else f"{flag} {_metavar(action)}"


def _shown(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
            and a.help is not argparse.SUPPRESS]  # e.g. --debug after the command


def _synopsis(prog: str, parser: argparse.ArgumentParser) -> str:
    groups = {id(a): g for g in parser._mutually_exclusive_groups for a in g._group_actions}
    parts, done = [prog], set()
    for action in _shown(parser):
        group = groups.get(id(action))
        if group is not None:
            if id(group) in done:
                continue
            done.add(id(group))
            choice = " | ".join(_invocation(a) for a in group._group_actions)
            parts.append(f"({choice})" if group.required else f"[{choice}]")
        elif not action.option_strings or action.required:
            parts.append(_invocation(action))
        else:
            parts.append(f"[{_invocation(action)}]")
    lines = [parts[0]]
    for part in parts[1:]:  # wrapped like a shell command, never inside a part
        if len(lines[-1]) + 1 + len(part) > WIDTH - 2:
            lines[-1] += " \\"
            lines.append("    " + part)
        else:
            lines[-1] += " " + part
    return "\n".join(lines)


def _default(action: argparse.Action) -> str:
    """The default worth showing: none for flags, unset values, or help that states its own."""
    default = action.default
    if (action.nargs == 0 or default is None or default == [] or default is argparse.SUPPRESS
            or "default" in (action.help or "")):
        return ""
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | description |", "|---|---|---|"]
    for action in _shown(parser):
        names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{_metavar(action)}`"
        if action.option_strings and action.nargs != 0:
            names += f" `{_metavar(action)}`"
        notes = []
        if action.required and action.option_strings:  # positionals always are
            notes.append("required")
        if isinstance(action, argparse._AppendAction) and "repeatable" not in (action.help or ""):
            notes.append("repeatable")
        help_text = action.help or ""
        if notes:
            help_text = f"{help_text} ({', '.join(notes)})" if help_text else ", ".join(notes)
        rows.append(f"| {names} | {_default(action)} | {_cell(help_text)} |")
    return rows


def render(parser: argparse.ArgumentParser) -> str:
    """The Markdown reference of ``parser`` (the ``motionmae`` command and its subcommands)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help or "" for a in sub._choices_actions}
    out = [
        "# Command-line reference",
        "",
        f"Generated from `motionmae.cli.build_parser()` by `{GENERATOR}`: do not edit by hand "
        "(`tests/test_cli_doc.py` fails when this file is out of date). `motionmae COMMAND "
        "--help` prints the same. Getting started: `docs/getting-started.md`.",
        "",
        parser.description or "",
        "",
        "```",
        _synopsis(parser.prog, parser) + " COMMAND ...",
        "```",
        "",
        *_table(parser),
        "",
        "| command | what it does |",
        "|---|---|",
        *(f"| [`{name}`](#motionmae-{name}) | {_cell(summaries.get(name, ''))} |"
          for name in sub.choices),
    ]
    for name, command in sub.choices.items():
        out += [
            "",
            f"## motionmae {name}",
            "",
            summaries.get(name, ""),
            "",
            "```",
            _synopsis(f"{parser.prog} {name}", command),
            "```",
            "",
            *_table(command),
        ]
    return "\n".join([*out, *_components()]) + "\n"


def _components() -> list[str]:
    """The registered targets, masking kinds and trackers (``--targets``, ``--masking``,
    ``tracking.tracker``) with their config sections, from the registries."""
    import dataclasses

    from motionmae.masking import MASKINGS
    from motionmae.motion import TRACKERS
    from motionmae.targets import TARGETS

    out = ["", "## Components", "",
           "What `--targets`, `--masking` and `--set tracking.tracker=` accept: the components "
           "registered in the package (a plugin named by `MOTIONMAE_PLUGINS` adds its own; "
           "`docs/architecture.md`, \"Add a component\"). Each has a config section under its "
           "name; `--set SECTION.KEY=VALUE` sets one of its settings."]
    for title, registry, section, flags in (
            ("Targets", TARGETS, "targets", lambda s: ", ".join(
                f for f, on in (("needs tracks", s.needs_tracks), ("cacheable", s.cacheable),
                                ("loader hooks", s.hooks is not None),
                                ("predicts features", s.predicts_features)) if on)),
            ("Masking kinds", MASKINGS, "masking", lambda s: ", ".join(
                f for f, on in (("needs tracks", s.needs_tracks(s.config())),
                                ("trained with the model", s.trainable)) if on)),
            ("Trackers", TRACKERS, "tracking", lambda s: "")):
        out += ["", f"### {title}", "", "| name | section | settings (defaults) | notes |",
                "|---|---|---|---|"]
        for name in registry.names():
            spec = registry.get(name)
            defaults = spec.config()
            settings = ", ".join(f"`{f.name}`={getattr(defaults, f.name)!r}"
                                 for f in dataclasses.fields(defaults)) or "none"
            out.append(f"| `{name}` | `{section}.{name}` | {_cell(settings)} | "
                       f"{_cell(flags(spec))} |")
    return out


def main() -> int:
    from motionmae.cli import build_parser

    sys.stdout.write(render(build_parser()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
