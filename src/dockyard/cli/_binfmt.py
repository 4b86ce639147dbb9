"""``dockyard debug binfmt [--install [ARCH...]]``: the platforms this host runs.

Without ``--install`` it lists each platform a build's ``RUN`` can use here: the host's
own (``native``) and those a binfmt_misc handler with the ``F`` flag emulates
(``emulated``, with the handler and its interpreter), then handlers that match an
architecture but cannot serve a build container (disabled, no ``F`` flag).

``--install`` registers Debian's ``qemu-user-static`` interpreters for the named
architectures (every one Debian ships when none is named, or ``all``) with the ``F`` flag,
as ``docker run --privileged tonistiigi/binfmt --install`` does for docker: as root, once
per boot (the kernel forgets handlers on reboot), idempotent. Builds never register
handlers themselves.
"""

from __future__ import annotations

import json

import click

__all__ = ["binfmt"]


@click.command("binfmt")
@click.option(
    "--install",
    is_flag=True,
    help="Register qemu-user-static's handlers with the F flag (as root) before listing.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.argument("archs", nargs=-1, metavar="[ARCH]...")
def binfmt(install: bool, fmt: str, archs: tuple[str, ...]) -> None:
    """List the platforms this host can run build steps for (natively or emulated by
    QEMU through binfmt_misc); with --install, register emulators for ARCH (arm64, arm,
    riscv64, ppc64le, s390x, ... or all; default all) first."""
    from dockyard.core import UsageError
    from dockyard.executor import ELF_ARCHITECTURES, detect_host_platforms, install_handlers

    if archs and not install:
        raise UsageError("architectures are named only with --install")
    if install:
        for result in install_handlers(archs):
            click.echo(f"{result.handler}: {result.action} ({result.arch})", err=True)
    found = detect_host_platforms()
    unusable: list[tuple[str, str]] = []
    for arch in ELF_ARCHITECTURES:
        platform = arch.platforms[0]
        if found.find(platform) is not None:
            continue
        if any(h.handles(arch) for h in found.handlers):
            unusable.append((str(platform), found.why_not(platform)))
    if fmt == "json":
        doc = {
            "binfmt_misc": str(found.root),
            "problem": found.problem or None,
            "platforms": [
                {
                    "platform": str(s.platform),
                    "native": s.native,
                    "handler": None if s.handler is None else s.handler.name,
                    "interpreter": None if s.handler is None else s.handler.interpreter,
                }
                for s in found.supported
            ],
            "unusable": [{"platform": p, "reason": r} for p, r in unusable],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    rows = [("PLATFORM", "RUNS", "HANDLER", "INTERPRETER")]
    for s in found.supported:
        handler = s.handler
        rows.append(
            (
                str(s.platform),
                "native" if handler is None else "emulated",
                "" if handler is None else handler.name,
                "" if handler is None else handler.interpreter,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        click.echo((line + "  " + row[3]).rstrip())
    for name, reason in unusable:
        click.echo(f"{name}: not usable: {reason}", err=True)
    if found.problem:
        click.echo(f"no emulation: {found.problem}", err=True)
    if found.problem or all(s.native for s in found.supported):
        click.echo(
            "to run other platforms' RUN steps: apt-get install qemu-user-static &&"
            " dockyard debug binfmt --install",
            err=True,
        )
