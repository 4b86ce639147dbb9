"""The peer tools' benchmark contexts (``../shared/tools/bench-ctx/``) built on the
embedded engine and on a real ``dockyardd``: with ``SOURCE_DATE_EPOCH`` and
``rewrite-timestamp=true`` both give the same image digest (issue 6's acceptance).

``multistage`` is regenerated into a temporary directory with its own script
(``gen-multistage.sh``); ``smoke`` is a fixed context read where it is. Both name their
base image ``127.0.0.1:5000/busybox`` (the peer tools' registry); the builds here map
that name onto the locally made ``docker.io/library/busybox:latest`` with a named
context (``--build-context 127.0.0.1:5000/busybox=docker-image://…``), so the
Dockerfiles' ``FROM`` lines stay as generated and no registry is needed.

One step of the generated ``multistage`` Dockerfile is not reproducible in any builder
(BuildKit included), so two cold builds of the context as generated never give the same
digest, whatever the engine does::

    RUN tar -cf /bundle.tar -C /src . && gzip -1 /bundle.tar && ls -l /bundle.tar.gz

- ``gzip`` without ``-n`` writes the input file's modification time (when the ``tar``
  ran) into the gzip header of ``/bundle.tar.gz``;
- ``tar`` records the modification time of ``/src`` itself (the ``./`` entry). ``WORKDIR
  /src`` created that directory and ``COPY src/ /src/`` wrote into it, so the kernel set
  its time to the moment of the build (BuildKit's copier, like Dockyard's, copies the
  metadata of directories it creates, not of an existing destination).

``rewrite-timestamp`` clamps the times of files in the layers, not bytes inside a file
a step wrote. The test neutralizes exactly that step in its generated copy — ``touch -d
@EPOCH /src`` before the ``tar`` and ``gzip -1n`` — and fails if the script no longer
writes that line (so a fixed script is noticed). Everything else is built as generated.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.cli.main import main
from tests.integration.daemon.conftest import DaemonProcess
from tests.integration.engine.conftest import store_busybox

ROOT = Path(__file__).resolve().parents[3]
BENCH_CTX = ROOT.parent / "shared" / "tools" / "bench-ctx"
EPOCH = "1700000000"
BASE = "127.0.0.1:5000/busybox"
NAMED_BASE = f"{BASE}=docker-image://docker.io/library/busybox:latest"

NON_DETERMINISTIC = (
    "RUN tar -cf /bundle.tar -C /src . && gzip -1 /bundle.tar && ls -l /bundle.tar.gz"
)
NEUTRALIZED = (
    f"RUN touch -d @{EPOCH} /src && tar -cf /bundle.tar -C /src . && gzip -1n /bundle.tar"
    " && ls -l /bundle.tar.gz"
)

pytestmark = pytest.mark.slow


def bench_ctx() -> Path:
    if not (BENCH_CTX / "gen-multistage.sh").is_file():
        # Data beside the repository, not something CI installs: a clone elsewhere has
        # no ../shared, and that is no defect of the machine (unlike a missing crun).
        pytest.skip(f"{BENCH_CTX} (the peer tools' benchmark contexts) is not beside this clone")
    return BENCH_CTX


def generate_multistage(out: Path) -> Path:
    """``gen-multistage.sh OUT`` (its default base image name), then the one
    non-reproducible step made reproducible (see the module's docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "REGISTRY_ADDR"}
    subprocess.run(
        ["bash", str(bench_ctx() / "gen-multistage.sh"), str(out)],
        check=True,
        capture_output=True,
        env=env,
    )
    dockerfile = out / "Dockerfile"
    text = dockerfile.read_text()
    assert text.count(f"FROM {BASE}") == 3, text
    assert NON_DETERMINISTIC in text, (
        "gen-multistage.sh no longer writes the non-reproducible bundle step this test "
        f"neutralizes; update the test:\n{text}"
    )
    dockerfile.write_text(text.replace(NON_DETERMINISTIC, NEUTRALIZED))
    assert len(list((out / "src").rglob("*.txt"))) == 2000
    return out


async def build(where: list[str], ctx: Path, meta: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Build ``ctx`` into the image store of the engine ``where`` selects (``--addr …``
    before the command, or ``--state-dir …`` after it); the manifest digest."""
    before, after = (where, []) if where[0] == "--addr" else ([], where)
    args = [
        *before, "build", *after, "--progress", "plain",
        "--build-context", NAMED_BASE,
        "-o", f"type=image,name=bench/{ctx.name}:latest,rewrite-timestamp=true",
        "--metadata-file", str(meta), str(ctx),
    ]  # fmt: skip
    code = await asyncio.to_thread(main, args)
    err = capsys.readouterr().err
    assert code == 0, err
    metadata = json.loads(await asyncio.to_thread(meta.read_text))
    digest = metadata["containerimage.digest"]
    assert isinstance(digest, str)
    assert digest.startswith("sha256:")
    return digest


async def test_bench_contexts_give_the_same_digest_embedded_and_on_the_daemon(
    running: DaemonProcess,
    busybox_rootfs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    multistage = await asyncio.to_thread(generate_multistage, tmp_path / "multistage")
    smoke = tmp_path / "smoke"
    shutil.copytree(bench_ctx() / "smoke", smoke)
    embedded_state = tmp_path / "embedded-state"
    await store_busybox(embedded_state, busybox_rootfs)
    embedded = ["--state-dir", str(embedded_state)]
    daemon = ["--addr", f"unix://{running.socket}"]

    digests: dict[str, tuple[str, str]] = {}
    for ctx in (multistage, smoke):
        on_engine = await build(embedded, ctx, tmp_path / f"{ctx.name}-embedded.json", capsys)
        on_daemon = await build(daemon, ctx, tmp_path / f"{ctx.name}-daemon.json", capsys)
        digests[ctx.name] = (on_engine, on_daemon)
    assert digests["multistage"][0] == digests["multistage"][1], digests
    assert digests["smoke"][0] == digests["smoke"][1], digests
    assert digests["multistage"][0] != digests["smoke"][0]
