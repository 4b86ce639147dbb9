"""Record what docker's BuildKit produces for the end-to-end cases (run by hand).

    .venv/bin/python tests/data/dockerfile/e2e/peer/regenerate.py [CASE ...]

Needs the peer of ``../shared/tools/``: dockerd 20.10 (BuildKit v0.8) driven by
``/usr/bin/docker`` with ``DOCKER_BUILDKIT=1``, and the registry serving
``127.0.0.1:5000/busybox:latest`` (``make-base-images.sh``). For every build of a case
with ``source = "peer"`` it writes ``<case>/peer/<build>.tree`` and ``.json`` (or
``.error`` for a build that must fail); builds with ``source = "docs"`` are skipped (the
peer lacks their features: their expectations come from BuildKit's documentation).
Images it makes are tagged ``dye2e-…`` and removed at the end. The test suite never runs
this script: it compares Dockyard with the files it wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

DOCKER = "/usr/bin/docker"
ROOT = Path(__file__).resolve().parents[5]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.integration.dockerfile_e2e import cases as c
    from tests.integration.dockerfile_e2e.images import read_saved_image

    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    made: list[str] = []

    def docker(*args: str, check: bool = True, extra_env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [DOCKER, *args],
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise SystemExit(f"docker {' '.join(args)} failed:\n{done.stderr}")
        return done.stderr if done.returncode != 0 else done.stdout

    selected = [case for case in c.load_cases() if not argv or case.name in argv]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="dye2e-peer-") as tmp:
        base_ctx = Path(tmp, "base")
        base_ctx.mkdir()
        (base_ctx / "Dockerfile").write_text(f"FROM {c.PEER_BASE}\n")
        docker("build", "--network=host", "-q", "-t", "dye2e-peer-base", str(base_ctx))
        made.append("dye2e-peer-base")
        docker("save", "-o", f"{tmp}/base.tar", "dye2e-peer-base")
        base = read_saved_image(Path(tmp, "base.tar"))
        try:
            for case in selected:
                with c.workspace(case, Path(tmp, case.name)) as ws:
                    # outside the context, so that COPY . sees the Dockerfiles unchanged
                    dockerfiles = ws.root / "peer-dockerfiles"
                    for path in {b.dockerfile for b in case.builds}:
                        df = dockerfiles / path
                        df.parent.mkdir(parents=True, exist_ok=True)
                        df.write_text(c.peer_dockerfile((ws.context / path).read_text()))
                    for spec in case.builds:
                        if spec.source != "peer":
                            print(f"{spec.id}: skipped (source = docs)")
                            continue
                        tag = spec.tag or f"dye2e-peer-{case.name}-{spec.name}"
                        args = ["build", "--network=host", "--progress=plain", "-t", tag]
                        args += ["-f", str(dockerfiles / spec.dockerfile)]
                        if spec.target:
                            args += ["--target", spec.target]
                        for k, v in spec.build_args.items():
                            args += ["--build-arg", f"{k}={ws.fill(v)}"]
                        for k, v in spec.labels.items():
                            args += ["--label", f"{k}={v}"]
                        for ident, src in spec.secrets.items():
                            args += ["--secret", f"id={ident},src={case.path / src}"]
                        if spec.ssh:
                            args += ["--ssh", f"default={ws.env['SSH_AUTH_SOCK']}"]
                        if spec.build_contexts:
                            raise SystemExit(f"{spec.id}: the peer has no named contexts")
                        done = subprocess.run(
                            [DOCKER, *args, str(ws.context)],
                            env={**env, **ws.env},
                            capture_output=True,
                            text=True,
                            check=False,
                        )
                        out = case.path / "peer"
                        out.mkdir(exist_ok=True)
                        if spec.error is not None:
                            if done.returncode == 0:
                                made.append(tag)
                                print(f"{spec.id}: FAIL: the peer built it")
                                failures += 1
                                continue
                            lines = [
                                ws.unfill(line)
                                for line in done.stderr.splitlines()
                                if line and not line.startswith("#")
                            ]
                            (out / f"{spec.name}.error").write_text("\n".join(lines) + "\n")
                            print(f"{spec.id}: failed as expected")
                            continue
                        if done.returncode != 0:
                            print(f"{spec.id}: FAIL: the peer failed:\n{done.stderr}")
                            failures += 1
                            continue
                        made.append(tag)
                        saved = Path(tmp, f"{case.name}-{spec.name}.tar")
                        docker("save", "-o", str(saved), tag)
                        result = c.result_of(read_saved_image(saved), base, ws, times=spec.times)
                        c.write_result(out, spec.name, result)
                        print(f"{spec.id}: recorded")
        finally:
            for tag in dict.fromkeys(made):
                docker("rmi", tag, check=False)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
