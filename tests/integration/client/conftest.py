"""The client against a real ``dockyardd`` (the daemon tests' harness: a temporary
state directory holding busybox, a socket in a short temporary directory, the process
stopped by its PID), and on the embedded engine."""

from __future__ import annotations

from tests.integration.cli.conftest import _no_daemon_from_the_environment, ssh_agent, ssh_key
from tests.integration.daemon.conftest import daemon, daemon_config, running, socket_dir

__all__ = [
    "_no_daemon_from_the_environment",
    "daemon",
    "daemon_config",
    "running",
    "socket_dir",
    "ssh_agent",
    "ssh_key",
]
