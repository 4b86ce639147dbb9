"""A small example build: run a command in busybox, keep only the files it wrote.

    .venv/bin/python examples/busybox_image.py             # the base image, once (scripts/setup did it)
    dockyard solve examples/hello.py --output type=local,dest=out
    dockyard solve examples/hello.py --build-arg GREETING=hi -o type=tar,dest=out.tar
    dockyard debug dump-llb --python examples/hello.py    # print the graph

The result is a filesystem with /hello.txt and /build-info.txt and nothing else.
"""

from __future__ import annotations

from dockyard import llb
from dockyard.frontend import BuildContext


def build(ctx: BuildContext) -> llb.State:
    greeting = ctx.build_arg("GREETING", "hello from dockyard")
    base = llb.image("docker.io/library/busybox:latest")

    built = (
        base.with_env("GREETING", greeting or "")
        .with_cwd("/out")
        .run(
            'echo "$GREETING" > hello.txt && uname -m > build-info.txt',
            mounts=[llb.TmpfsMount("/tmp")],
            name="write the files",
        )
    )
    return llb.scratch().file(
        llb.copy(built.root, "/out/", "/", dir_contents_only=True, create_dest_path=True),
        name="keep only /out",
    )
