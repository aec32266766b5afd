"""docs/architecture.md's module map stays true: every module of the package is in it, under
its package's entry, and every module it names exists. The package tree is read at test
time, so a module added, moved or removed fails here until the map says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "motionmae"
DOC = ROOT / "docs" / "architecture.md"
# A module as the map writes it: ``name.py``, not part of a path (``tests/test_x.py``).
MODULE_NAME = re.compile(r"(?<![\w/.])(\w+\.py)\b")


def module_map(text: str) -> dict[str, list[str]]:
    """The modules the map names, by package folder: ``{"": ["__init__.py", "api.py", ...],
    "data/": ["config.py", ...], "data/formats/": [...]}``, from the code block under
    "## Module map".

    After the ``motionmae/`` line, an entry starts on a line indented by two spaces with its
    name: a top-level module (``api.py``, its description after it) or a package folder
    (``data/formats/``) whose text names its modules; more deeply indented lines continue
    the entry.
    """
    section = text.split("## Module map", 1)[1]
    lines = section.split("```", 2)[1].strip("\n").splitlines()
    assert lines[0] == "motionmae/", f"the map starts with {lines[0]!r}"
    top: list[str] = []
    packages: dict[str, list[str]] = {}
    current = ""
    for line in lines[1:]:
        if re.match(r"^  \S", line):
            name, _, rest = line.strip().partition(" ")
            current = name if name.endswith("/") else ""
            if current:
                packages[current] = [rest]
            else:
                top.append(name)
        elif current:
            packages[current].append(line)
    named = {folder: MODULE_NAME.findall("\n".join(text)) for folder, text in packages.items()}
    return {"": top, **named}


def package_modules() -> dict[str, set[str]]:
    """``{package folder relative to motionmae/ ("" for the top), {module file names}}``."""
    modules: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        folder = path.parent.relative_to(PACKAGE).as_posix()
        modules.setdefault("" if folder == "." else f"{folder}/", set()).add(path.name)
    return modules


@pytest.fixture(scope="module")
def named() -> dict[str, list[str]]:
    return module_map(DOC.read_text())


def test_every_module_of_the_package_is_in_the_module_map(named):
    missing = [f"{folder}{name}" for folder, names in sorted(package_modules().items())
               for name in sorted(names - set(named.get(folder, [])))]
    assert not missing, f"docs/architecture.md's module map lacks {missing}"


def test_every_module_the_map_names_exists(named):
    modules = package_modules()
    stale = [f"{folder}{name}" for folder, names in named.items() for name in names
             if name not in modules.get(folder, set())]
    assert not stale, f"docs/architecture.md's module map names modules that do not exist: {stale}"


def test_the_map_is_read_as_written():
    """The parser on a small map: top-level modules one a line, a package's entry over
    several lines, paths to other files not taken for modules of the entry."""
    text = ("## Module map\n\n```\nmotionmae/\n  api.py       load_encoder, from\n"
            "               any format (see errors.py)\n"
            "  data/        config.py (DataConfig), video.py\n"
            "               (reads; tests/test_video.py checks), hooks.py\n"
            "  data/formats/ spec.py, ssv2.py\n```\n")
    assert module_map(text) == {"": ["api.py"], "data/": ["config.py", "video.py", "hooks.py"],
                                "data/formats/": ["spec.py", "ssv2.py"]}
