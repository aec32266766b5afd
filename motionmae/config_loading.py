"""Loading typed configs: dataclasses from YAML plus ``key=value`` overrides, with every value
checked against the field's type and every error naming the dotted key
(``masking.ratio: must be in (0, 1) or null, got 1.5``), so a typo in a 3-day run's config
fails in the first second, not after the first epoch.

A section whose sub-sections belong to registered components (``targets.<name>``,
``masking.<kind>``, ``tracking.<tracker>``) subclasses :class:`ComponentSections`: its plain
fields load as usual, each other key must name a registered component and loads into that
component's config dataclass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from motionmae.errors import UsageError


class ConfigError(UsageError):
    """A configuration value is unknown, of the wrong type or out of range; names the key."""


def check(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"{key}: {message}"`` unless ``condition``."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


# --------------------------------------------------------------------------------------------
# Loading: dict/YAML -> dataclass with type checks, and dotted overrides.

T = TypeVar("T")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: must not be null")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        check(isinstance(value, dict), key, f"must be a mapping, got {value!r}")
        return from_dict(annotation, value, key)
    if annotation is Path:
        check(isinstance(value, str | Path), key, f"must be a path, got {value!r}")
        return Path(value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        check(isinstance(value, list | tuple), key, f"must be a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            check(len(value) == len(args), key, f"must have {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in
                         enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is bool:
        check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        check(isinstance(value, int) and not isinstance(value, bool), key,
               f"must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept it as the number it is.
            with contextlib.suppress(ValueError):
                value = float(value)
        check(isinstance(value, int | float) and not isinstance(value, bool), key,
               f"must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        check(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types.

    A class may set ``LEGACY_KEYS``: dotted keys of older configs and the dotted key each
    moved to (``{"tracking.cache": "cache.path"}``), so configs saved before still load."""
    if issubclass(cls, ComponentSections):
        return cls.from_config_dict(data, prefix)
    data = move_legacy_keys(data, getattr(cls, "LEGACY_KEYS", {}))
    return cls(**_field_values(cls, data, prefix))


def _field_values(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``data``'s values coerced to ``cls``'s field types; an unknown key is an error listing
    the fields."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in names:
            raise ConfigError(f"{key}: unknown key; known keys here: "
                              f"{sorted(names)}")
        kwargs[name] = _coerce(value, hints[name], key)
    return kwargs


def _build_section(cls: type, data: dict[str, Any], key: str) -> Any:
    """A component's config dataclass from ``data``; its own checks (``ValueError`` in
    ``__post_init__``) are reported on ``key``."""
    try:
        return from_dict(cls, data, key)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from error


def validate_section(section: Any, key: str) -> None:
    """Run a section's ``validate``: ``validate(key)`` for config sections, ``validate()``
    (errors re-raised on ``key``) for components that validate themselves."""
    validate = getattr(section, "validate", None)
    if validate is None:
        return
    if inspect.signature(validate).parameters:
        validate(key)
        return
    try:
        validate()
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from error


class ComponentSections:
    """Base of a config section that holds, beside its plain fields, one sub-section per
    registered component, keyed by the component's name (``targets.tracks.norm``).

    Subclasses are ``@dataclass(init=False, eq=False)`` classes (their fields are the plain
    ones) that set ``REGISTRY`` (the components' :class:`~motionmae.registry.Registry`) and
    may set ``LEGACY_KEYS``: flat keys of older configs and the sub-section key they moved
    to (``{"rho": "motion.rho"}``), so configs saved before still load. Sub-sections are
    attributes and keyword arguments (``TargetsConfig(names=["tracks"],
    tracks=TracksTargetConfig(norm="patch"))``); :meth:`selected` names the ones in use,
    which are always saved (others only when changed from their defaults).
    """

    REGISTRY: ClassVar[Any]  # a motionmae.registry.Registry (which imports this module)
    LEGACY_KEYS: ClassVar[dict[str, str]] = {}

    def __init__(self, **values: Any) -> None:
        for f in dataclasses.fields(self):
            if f.name in values:
                setattr(self, f.name, values.pop(f.name))
            elif f.default is not dataclasses.MISSING:
                setattr(self, f.name, f.default)
            else:
                setattr(self, f.name, f.default_factory())
        self.sections: dict[str, Any] = {}
        for name, section in values.items():
            config = self.REGISTRY.get(name).config
            if not isinstance(section, config):
                raise TypeError(f"{type(self).__name__}({name}=...): expected a "
                                f"{config.__name__}, got {type(section).__name__}")
            self.sections[name] = section
        for spec in self.REGISTRY:
            self.sections.setdefault(spec.name, spec.config())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name)
                   for f in dataclasses.fields(self)) and self.sections == other.sections

    def __repr__(self) -> str:
        plain = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({plain})"

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: a component's sub-section.
        if name.startswith("_") or name == "sections" or "sections" not in self.__dict__:
            raise AttributeError(name)
        if name not in self.sections:
            if name not in self.REGISTRY:
                raise AttributeError(f"{type(self).__name__} has no field or registered "
                                     f"{self.REGISTRY.kind} {name!r}")
            self.sections[name] = self.REGISTRY.get(name).config()
        return self.sections[name]

    def selected(self) -> list[str]:
        """The components this section uses (their sub-sections are validated and saved)."""
        raise NotImplementedError

    @classmethod
    def from_config_dict(cls, data: dict[str, Any], prefix: str) -> ComponentSections:
        data = move_legacy_keys(data, cls.LEGACY_KEYS)
        plain = {f.name for f in dataclasses.fields(cls)}
        registered = cls.REGISTRY.names()
        values = _field_values(cls, {k: v for k, v in data.items() if k in plain}, prefix)
        sections = {}
        for name, value in data.items():
            if name in plain:
                continue
            key = f"{prefix}.{name}" if prefix else name
            if name not in cls.REGISTRY:
                raise ConfigError(f"{key}: unknown key; known keys here: {sorted(plain)} and "
                                  f"the registered {cls.REGISTRY.kind}s {registered}")
            check(isinstance(value, dict), key, f"must be a mapping, got {value!r}")
            sections[name] = _build_section(cls.REGISTRY.get(name).config, value, key)
        return cls(**values, **sections)

    def config_dict(self) -> dict[str, Any]:
        """Plain fields, then the sub-sections in use or changed (:meth:`kept_sections`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update((name, self.sections[name]) for name in self.kept_sections())
        return out

    def kept_sections(self) -> list[str]:
        """The sub-sections that are saved and validated: the selected ones and any other
        changed from its defaults (a typo there is still a typo); components without
        settings have none."""
        selected = self.selected()
        kept = []
        for name, section in self.sections.items():
            if dataclasses.is_dataclass(section) and not dataclasses.fields(section):
                continue
            if name in selected or (name in self.REGISTRY
                                    and section != self.REGISTRY.get(name).config()):
                kept.append(name)
        return kept

    def validate_sections(self, key: str) -> None:
        for name in self.kept_sections():
            validate_section(self.sections[name], f"{key}.{name}")


def move_legacy_keys(data: dict[str, Any], moves: dict[str, str]) -> dict[str, Any]:
    """A copy of ``data`` with the value at each legacy dotted key moved to its new dotted key
    (a value given at both places keeps the new one). ``data`` is left as it was."""
    data = _deep_merge({}, data)
    for old, new in moves.items():
        *old_path, old_name = old.split(".")
        parent = _node(data, old_path)
        if not isinstance(parent, dict) or old_name not in parent:
            continue
        value = parent.pop(old_name)
        *new_path, new_name = new.split(".")
        node: Any = data
        for part in new_path:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(new_name, value)
    return data


def _node(data: dict[str, Any], path: list[str]) -> Any:
    """The value at ``path`` in nested dicts, or None."""
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists, paths as strings) suitable for JSON and YAML."""
    return _plain(config)


def _plain(value: Any) -> Any:
    if isinstance(value, ComponentSections):
        return {k: _plain(v) for k, v in value.config_dict().items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. masking.ratio=0.75")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted ``key=value`` overrides (values parsed as YAML scalars) in a nested dict."""
    for text in overrides:
        path, value = _parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def _renamed_override(text: str, moves: dict[str, str]) -> str:
    """Override ``key=value`` with a legacy key (or a key under it) renamed to its new key."""
    key, sep, value = text.partition("=")
    for old, new in moves.items():
        if key.strip() == old or key.strip().startswith(old + "."):
            return new + key.strip()[len(old):] + sep + value
    return text


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> T:
    """Load ``cls`` from defaults <- ``base`` <- YAML file <- overrides, then validate.

    ``cls.LEGACY_KEYS`` (if any) move within each of these layers before they are merged, so
    that a later layer's legacy key (``--set tracking.cache=...``) still overrides an earlier
    layer's new one (a resumed run's saved ``cache.path``)."""
    moves = getattr(cls, "LEGACY_KEYS", {})
    data = move_legacy_keys(base or {}, moves)
    if path is not None:
        data = _deep_merge(data, move_legacy_keys(read_config_file(path), moves))
    apply_overrides(data, [_renamed_override(text, moves) for text in overrides or []])
    config = from_dict(cls, data)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The nested dict of YAML config file ``path`` (not yet checked against a config class);
    a run folder stands for its ``config.yaml``, so every ``--config`` takes one."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"config file {path} is a folder without a config.yaml (not a "
                              "run folder)")
        path = path / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    loaded = _read_yaml(path) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return loaded


def _read_yaml(path: Path) -> Any:
    """A config file's YAML (safe: no Python objects); a file that is not YAML, or asks for
    Python objects, is a :class:`ConfigError` on one line."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path}: not a text file ({error.reason})") from error
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if isinstance(error, yaml.constructor.ConstructorError):  # e.g. !!python/object
            raise ConfigError(f"config file {path}{at}: refused: {problem} (config files are "
                              "plain YAML, read with yaml.safe_load)") from error
        raise ConfigError(f"config file {path}: not valid YAML{at}: {problem}") from error


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value if not isinstance(value, dict) else _deep_merge({}, value)
    return into
