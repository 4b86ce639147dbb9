"""``--add-host``, ``--ulimit`` and ``--shm-size`` values in LLB: parsing
(:meth:`HostIP.parse`, :meth:`Ulimit.parse`), and an exec's ``Meta.extraHosts``,
``Meta.ulimit``, ``Meta.cgroupParent`` and ``/dev/shm`` tmpfs through marshal and load."""

from __future__ import annotations

import pytest

from dockyard import llb
from dockyard.core import UsageError


@pytest.mark.parametrize(
    ("text", "host", "ip"),
    [
        ("db:10.0.0.2", "db", "10.0.0.2"),
        ("db=10.0.0.2", "db", "10.0.0.2"),
        ("v6:::1", "v6", "::1"),
        ("v6=fd00:0::1", "v6", "fd00::1"),  # canonical, as Go's net.IP prints it
        ("v6:[fd00::1]", "v6", "fd00::1"),
        ("v6=[::ffff:10.1.1.1]", "v6", "10.1.1.1"),
        ("gw:host-gateway", "gw", llb.HOST_GATEWAY_IP),
        ("gw=host-gateway", "gw", "127.0.0.1"),
    ],
)
def test_host_ip_parse(text: str, host: str, ip: str) -> None:
    assert llb.HostIP.parse(text) == llb.HostIP(host=host, ip=ip)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nohost", "expected NAME:IP"),
        (":1.2.3.4", "expected NAME:IP"),
        ("db:", "expected NAME:IP"),
        ("db:1.2.3", "invalid IP address '1.2.3'"),
        ("db:example.com", "invalid IP address"),
        ("a b:1.2.3.4", "invalid host name"),
        ("a,b:1.2.3.4", "invalid host name"),
    ],
)
def test_bad_hosts(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        llb.HostIP.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nofile=1024", llb.Ulimit(name="nofile", soft=1024, hard=1024)),
        ("nofile=1024:2048", llb.Ulimit(name="nofile", soft=1024, hard=2048)),
        ("core=-1", llb.Ulimit(name="core", soft=-1, hard=-1)),
        ("core=0:-1", llb.Ulimit(name="core", soft=0, hard=-1)),
    ],
)
def test_ulimit_parse(text: str, expected: llb.Ulimit) -> None:
    assert llb.Ulimit.parse(text) == expected
    assert llb.Ulimit.parse(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nofile", "expected NAME=SOFT"),
        ("files=1", "unknown ulimit 'files'"),
        ("NOFILE=1", "unknown ulimit"),
        ("nofile=2:1", "soft limit must be at most the hard limit: 2 > 1"),
        ("nofile=-1:5", "soft limit must be at most the hard limit"),
        ("nofile=1:2:3", "at most two limits"),
        ("nofile=x", "integers"),
        ("nofile=-2", "invalid limit"),
    ],
)
def test_bad_ulimits(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        llb.Ulimit.parse(text)


def test_exec_options_round_trip_through_marshal_and_load() -> None:
    state = llb.image("busybox").run(
        "true",
        extra_hosts={"db": "10.0.0.2", "v6": "fd00::1"},
        ulimits=[llb.Ulimit.parse("nofile=1024:2048"), llb.Ulimit.parse("core=-1")],
        cgroup_parent="/builds",
        shm_size=128 << 20,
    )
    loaded = llb.Definition.load(state.root.marshal().to_bytes())
    (node,) = [n for n in loaded if n.kind == "exec"]
    exec_op = node.op.exec
    assert [(h.Host, h.IP) for h in exec_op.meta.extraHosts] == [
        ("db", "10.0.0.2"),
        ("v6", "fd00::1"),
    ]
    assert [(u.Name, u.Soft, u.Hard) for u in exec_op.meta.ulimit] == [
        ("nofile", 1024, 2048),
        ("core", -1, -1),
    ]
    assert exec_op.meta.cgroupParent == "/builds"
    (shm,) = [m for m in exec_op.mounts if m.dest == "/dev/shm"]
    assert int(shm.mountType) == 4  # TMPFS
    assert shm.TmpfsOpt.size == 128 << 20
    assert shm.input == -1
    assert shm.output == -1
    caps = {cap for cap, on in node.metadata.caps.items() if on}
    assert {"exec.meta.ulimit", "exec.mount.tmpfs", "exec.mount.tmpfs.size"} <= caps


def test_shm_size_zero_keeps_the_default_and_negative_is_refused() -> None:
    base = llb.image("busybox")
    plain = base.run("true").root.marshal()
    assert base.run("true", shm_size=0).root.marshal().to_bytes() == plain.to_bytes()
    with pytest.raises(UsageError, match="shm_size"):
        base.run("true", shm_size=-1)


def test_each_option_changes_the_exec_digest() -> None:
    base = llb.image("busybox")
    variants = [
        base.run("true"),
        base.run("true", ulimits=[llb.Ulimit.parse("nofile=1024")]),
        base.run("true", ulimits=[llb.Ulimit.parse("nofile=2048")]),
        base.run("true", cgroup_parent="/a"),
        base.run("true", shm_size=1 << 20),
        base.run("true", extra_hosts={"db": "10.0.0.2"}),
    ]
    digests = {v.root.marshal().head for v in variants}
    assert len(digests) == len(variants)
