"""The names the built-in frontends are registered under (BuildKit's for Dockerfiles)."""

from __future__ import annotations

__all__ = ["DOCKERFILE_FRONTEND", "PYTHON_FRONTEND"]

DOCKERFILE_FRONTEND = "dockerfile.v0"
PYTHON_FRONTEND = "python"
