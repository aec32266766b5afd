"""What a run ran on: Python, platform, CPUs and package versions (no torch import).

The training loop records it in ``RUN/env.json`` (with the device and world size) so that
``motionmae report`` shows the training machine, not the one building the report.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

PACKAGES = ("motionmae", "torch", "numpy", "av", "opencv-python-headless", "matplotlib")


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
