"""The versions of installed packages, as manifests and bench reports record them."""

from __future__ import annotations

import importlib.metadata


def package_version(package: str) -> str | None:
    """The installed version of `package`, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
