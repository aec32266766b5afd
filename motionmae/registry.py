"""Registries of components (targets, masking kinds, trackers): a name -> spec map filled by a
decorator where each component is defined, so adding one is one file.

Each kind of component has one :class:`Registry` in its package (``targets.registry``,
``masking.registry``, ``motion.registry``); the run config looks sections up in it by name
(``targets.<name>``, ``masking.<kind>``, ``tracking.<tracker>``), and the CLI's docs list
its names. A component defined outside the package registers the same way, before the
config that names it is loaded (``docs/architecture.md``, "Add a component").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from motionmae.config_loading import ConfigError

# ``check(section, run)``: a component's own rules across the run config's sections, given its
# section and the whole run config; it reports a broken rule through
# ``motionmae.config_loading.check`` (a ConfigError naming the key). The run config's
# validation calls it for each selected component, so no reader tests a component's name.
RunCheck = Callable[[Any, Any], None]


class ComponentSpec(Protocol):
    """What every registered spec has: its name, its config dataclass and its run checks."""

    name: str
    config: type
    check: RunCheck | None


SpecT = TypeVar("SpecT", bound=ComponentSpec)


class Registry(Generic[SpecT]):
    """Specs of one kind of component by name.

    ``kind`` names the component in messages (``"target"``); ``key`` is the config key that
    selects them (``"targets.names"``), so an unknown name fails as that key.
    """

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        self._specs: dict[str, SpecT] = {}

    def add(self, spec: SpecT) -> SpecT:
        """Register ``spec``; a second spec under a taken name is refused (the first would be
        silently replaced in every run that imports both)."""
        if not spec.name or not spec.name.isidentifier():
            raise ValueError(f"{self.kind} name {spec.name!r}: must be a Python identifier "
                             "(it is a config key)")
        taken = self._specs.get(spec.name)
        if taken is not None and taken != spec:
            raise ValueError(f"{self.kind} {spec.name!r} is already registered "
                             f"({taken.config.__module__})")
        self._specs[spec.name] = spec
        return spec

    def remove(self, name: str) -> SpecT:
        """Unregister ``name`` and return its spec (a test's component, after the test)."""
        if name not in self._specs:
            raise KeyError(f"{self.kind} {name!r} is not registered")
        return self._specs.pop(name)

    def get(self, name: str) -> SpecT:
        """The spec of ``name``; a :class:`ConfigError` on ``key`` listing the known names."""
        if name not in self._specs:
            raise ConfigError(f"{self.key}: unknown {self.kind} {name!r}; known: "
                              f"{self.names()}")
        return self._specs[name]

    def names(self) -> list[str]:
        """The registered names, sorted (registration order follows import order)."""
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[SpecT]:
        return iter(list(self._specs.values()))

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._specs)})"
