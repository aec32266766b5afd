"""Components defined outside the package: modules that register targets, masking kinds or
trackers when imported, named by ``MOTIONMAE_PLUGINS`` for the ``motionmae`` command.

``MOTIONMAE_PLUGINS=my_targets,/path/to/my_tracker.py``: each entry is an importable module
name or a ``.py`` file, imported once before the command runs, so its ``@register_target`` /
``@register_masking`` / ``@register_tracker`` decorators run before the config is read.
Loader workers are forked from that process and see the same registries.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from motionmae.errors import UsageError

PLUGINS_VARIABLE = "MOTIONMAE_PLUGINS"


def load_plugins(spec: str) -> list[ModuleType]:
    """Import every comma-separated module name or ``.py`` path in ``spec`` (in order)."""
    return [_load(entry.strip()) for entry in spec.split(",") if entry.strip()]


def _load(entry: str) -> ModuleType:
    try:
        if not entry.endswith(".py"):
            return importlib.import_module(entry)
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        name = f"motionmae_plugin_{path.stem}"
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # before running it, as an import does (pickling by name)
        module_spec.loader.exec_module(module)
        return module
    except (ImportError, OSError, SyntaxError) as error:
        raise UsageError(f"{PLUGINS_VARIABLE}: cannot load {entry!r}: {error}") from error
