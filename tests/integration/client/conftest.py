"""The client against a real ``dockyardd`` (the daemon tests' harness: a temporary
state directory holding busybox, a socket in a short temporary directory, the process
stopped by its PID), and on the embedded engine."""

from __future__ import annotations

from tests.integration.cli.conftest import ssh_agent, ssh_key
from tests.integration.daemon.conftest import daemon, daemon_config, running, socket_dir

__all__ = ["daemon", "daemon_config", "running", "socket_dir", "ssh_agent", "ssh_key"]
