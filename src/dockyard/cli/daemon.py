"""``dockyardd``: the Dockyard daemon.

    dockyardd [--config FILE] [--addr unix://PATH|tcp://HOST:PORT]... [--state-dir DIR] [--debug]

Without ``--config`` it reads ``/etc/dockyard/dockyardd.toml`` when that exists (see
:class:`dockyard.daemon.DaemonConfig` for the format). ``--addr`` (repeatable) replaces
the configured addresses; ``--state-dir`` the state directory. It serves until SIGTERM
or SIGINT, then cancels running builds, closes the engine and exits 0.

Exit codes: 0 after a clean shutdown, 1 when the daemon cannot start (the state
directory is in use ...), 2 for a bad command line or config file.

Startup and idle memory are features: this module imports only the standard library
until it runs; the engine's parts load when the daemon opens it, the Dockerfile
converter when a build first needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.daemon import DaemonConfig

__all__ = ["main", "run"]


_EPILOG = """\
clients: dockyard --addr ADDRESS build ... (or DOCKYARD_HOST=ADDRESS); a unix socket is
made mode 0660 for root and the config's group, a tcp address other than a loopback one
needs mutual TLS (clients: --tlscacert, --tlscert, --tlskey).

config file (TOML; every key optional, as buildkitd.toml with kebab-case keys):
  state-dir = "/var/lib/dockyard"
  allowed-entitlements = ["network.host"]     # what builds may --allow
  [grpc]
  address = ["unix:///run/dockyard/dockyardd.sock", "tcp://0.0.0.0:1234"]
  group = "dockyard"                          # may use the unix sockets (name or gid)
  [grpc.tls]                                  # for tcp addresses
  cert = "server.pem"
  key = "server-key.pem"
  ca = "ca.pem"                               # client certificates must chain to it
  [worker]
  runtime = "crun"                            # crun | runc
  max-parallelism = 4
  gc = true
  [[worker.gcpolicy]]
  keep-duration = "48h"
  max-used-space = "10GB"
  [registry."registry.local:5000"]
  http = true
(all keys: the docstring of dockyard.daemon.DaemonConfig)

exit codes: 0 after SIGTERM/SIGINT (running builds cancelled), 1 when the daemon cannot
start, 2 for a bad command line, config file or address.
"""


def _parser() -> argparse.ArgumentParser:
    from dockyard import __version__

    parser = argparse.ArgumentParser(
        prog="dockyardd",
        description="The Dockyard build daemon: serves builds, their progress, disk usage "
        "and prune to many clients over gRPC.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="the TOML config file (default: /etc/dockyard/dockyardd.toml if it exists)",
    )
    parser.add_argument(
        "--addr",
        metavar="ADDRESS",
        action="append",
        default=[],
        help="listen on unix://PATH or tcp://HOST:PORT (repeatable; replaces the config's; "
        "default unix:///run/dockyard/dockyardd.sock)",
    )
    parser.add_argument("--state-dir", metavar="DIR", type=Path, help="the state directory")
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"dockyardd {__version__}")
    return parser


def load_config(
    config_path: Path | None, addresses: Sequence[str], state_dir: Path | None
) -> DaemonConfig:
    """The configuration the command line asks for."""
    from dockyard.daemon import DEFAULT_CONFIG_PATH, DaemonConfig

    if config_path is not None:
        config = DaemonConfig.load(config_path)
    elif DEFAULT_CONFIG_PATH.is_file():
        config = DaemonConfig.load(DEFAULT_CONFIG_PATH)
    else:
        config = DaemonConfig()
    return config.with_overrides(addresses=addresses, state_dir=state_dir)


async def serve(config: DaemonConfig) -> None:
    """Run the daemon until SIGTERM or SIGINT, then shut it down."""
    import asyncio
    import signal

    from dockyard.cli import _gc
    from dockyard.daemon import Daemon

    daemon = await Daemon.start(config)
    _gc.started()  # the serving loop collects with the default thresholds
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.shutdown_soon)
    try:
        await daemon.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await daemon.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dockyardd`` with ``argv`` (without the program name); the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    import asyncio
    import logging

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:
        for noisy in ("asyncio", "grpc", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    from dockyard.core import ConfigError, DockyardError, UsageError

    try:
        config = load_config(args.config, args.addr, args.state_dir)
        asyncio.run(serve(config))
    except (ConfigError, UsageError) as exc:
        print(f"dockyardd: {exc}", file=sys.stderr)
        return 2
    except DockyardError as exc:
        print(f"dockyardd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    """The ``dockyardd`` console script."""
    from dockyard.cli import _gc

    _gc.startup()
    sys.exit(main())


if __name__ == "__main__":
    run()
