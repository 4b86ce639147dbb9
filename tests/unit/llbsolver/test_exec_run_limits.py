"""An exec op's ulimits, cgroup parent and ``/dev/shm`` size in its cache key (as
BuildKit's: only extra hosts' IPs are left out), and its ulimits read into the process's
rlimits."""

from __future__ import annotations

from dockyard import llb
from dockyard.api import ops as pb
from dockyard.llbsolver._exec import _digest_payload


def _exec(state: llb.ExecState) -> pb.ExecOp:
    (node,) = [n for n in llb.Definition.load(state.root.marshal().to_bytes()) if n.kind == "exec"]
    return node.op.exec


def test_what_is_in_the_cache_key() -> None:
    base = llb.image("busybox")
    plain = _digest_payload(_exec(base.run("true")))
    keys = {
        "ulimit": _digest_payload(_exec(base.run("true", ulimits=[llb.Ulimit.parse("nofile=8")]))),
        "ulimit2": _digest_payload(_exec(base.run("true", ulimits=[llb.Ulimit.parse("nofile=9")]))),
        "cgroup": _digest_payload(_exec(base.run("true", cgroup_parent="/a"))),
        "shm": _digest_payload(_exec(base.run("true", shm_size=1 << 20))),
        "shm2": _digest_payload(_exec(base.run("true", shm_size=2 << 20))),
    }
    assert len({plain, *keys.values()}) == len(keys) + 1
    # the host's name is in the key, its IP is not (BuildKit's cache map)
    host_a = _digest_payload(_exec(base.run("true", extra_hosts={"db": "10.0.0.1"})))
    host_b = _digest_payload(_exec(base.run("true", extra_hosts={"db": "10.0.0.2"})))
    host_c = _digest_payload(_exec(base.run("true", extra_hosts={"cache": "10.0.0.1"})))
    assert host_a == host_b != host_c
    assert plain != host_a
