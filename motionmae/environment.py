"""What a run runs on: its torch device by name, and Python, platform, CPUs and package
versions (no torch import at module level).

The training loop records it in ``RUN/env.json`` (with the device and world size) so that
``motionmae report`` shows the training machine, not the one building the report.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any

from motionmae.errors import UsageError

if TYPE_CHECKING:
    import torch

PACKAGES = ("motionmae", "torch", "numpy", "av", "opencv-python-headless", "matplotlib")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is available, else ``cpu``; any other name as
    ``torch.device(name)``. Raises :class:`~motionmae.errors.UsageError` (a ``ValueError``)
    for a name torch does not know: a user's typo, one line on the command line."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"not a torch device: {name!r} (auto, cpu, cuda, cuda:N or "
                         "mps)") from None


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_environment() -> dict[str, Any]:
    """Python, platform, CPU counts and the versions of :data:`PACKAGES`."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    values: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu count": os.cpu_count(),
        "usable cpus": usable,
    }
    for package in PACKAGES:
        name = "opencv" if package.startswith("opencv") else package
        values[name] = package_version(package)
    return values
