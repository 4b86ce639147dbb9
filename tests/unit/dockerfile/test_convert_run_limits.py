"""``--ulimit``, ``--shm-size``, ``--cgroup-parent`` and ``--add-host`` on every ``RUN``
of a conversion, as BuildKit's Dockerfile frontend puts them."""

from __future__ import annotations

from dockyard import llb
from dockyard.core import Platform
from dockyard.dockerfile import ConvertOptions, convert, parse_dockerfile

from .test_convert_golden import FakeResolver

AMD64 = Platform.parse("linux/amd64")
TEXT = (
    "FROM busybox AS a\nRUN one\n"
    "FROM busybox\nCOPY --from=a / /a\nRUN two\nRUN --mount=type=tmpfs,target=/dev/shm three\n"
)


async def _execs(options: ConvertOptions) -> list[object]:
    result = await convert(parse_dockerfile(TEXT), options, FakeResolver())
    return [op.op.exec for op in result.definition() if op.kind == "exec"]


async def test_every_run_gets_the_limits() -> None:
    options = ConvertOptions(
        build_platform=AMD64,
        extra_hosts=(llb.HostIP(host="db", ip="10.0.0.2"),),
        ulimits=(llb.Ulimit(name="nofile", soft=1024, hard=2048),),
        shm_size=64 << 20,
        cgroup_parent="/builds",
    )
    execs = await _execs(options)
    assert len(execs) == 3
    for exec_op in execs:
        meta = exec_op.meta  # type: ignore[attr-defined]
        assert [(h.Host, h.IP) for h in meta.extraHosts] == [("db", "10.0.0.2")]
        assert [(u.Name, u.Soft, u.Hard) for u in meta.ulimit] == [("nofile", 1024, 2048)]
        assert meta.cgroupParent == "/builds"
    shm = [
        [m.TmpfsOpt.size for m in e.mounts if m.dest == "/dev/shm"]  # type: ignore[attr-defined]
        for e in execs
    ]
    # the RUN that mounts a tmpfs at /dev/shm itself keeps its own (no size)
    assert sorted(shm) == [[0], [64 << 20], [64 << 20]]
    # and without them, RUN steps are as they were
    for exec_op in await _execs(ConvertOptions(build_platform=AMD64)):
        meta = exec_op.meta  # type: ignore[attr-defined]
        assert not meta.ulimit
        assert not meta.extraHosts
        assert meta.cgroupParent == ""
        dests = [m.dest for m in exec_op.mounts]  # type: ignore[attr-defined]
        assert dests.count("/dev/shm") <= 1
