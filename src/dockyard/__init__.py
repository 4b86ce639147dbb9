"""Dockyard: a fast container build engine."""

__version__ = "0.1.0"
