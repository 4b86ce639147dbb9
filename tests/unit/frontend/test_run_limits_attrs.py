"""BuildKit's ``add-hosts``, ``ulimit``, ``shm-size`` and ``cgroup-parent`` frontend
attributes: what ``DockerfileOptions.from_attrs`` reads (as a daemon gets them) and what
a client sends (``dockerfile_attrs``), both ways."""

from __future__ import annotations

import pytest

from dockyard import llb
from dockyard.client._wire import dockerfile_attrs
from dockyard.core import UsageError
from dockyard.frontend import DockerfileOptions


def test_the_attributes_are_read() -> None:
    options = DockerfileOptions.from_attrs(
        {
            "add-hosts": 'DB=10.0.0.2,v6=fd00::1,"cache=10.0.0.3"',
            "ulimit": "nofile=1024:2048,nproc=100",
            "shm-size": "134217728",
            "cgroup-parent": "/builds",
        }
    )
    assert options.extra_hosts == (
        llb.HostIP(host="db", ip="10.0.0.2"),  # lower-cased, as BuildKit's
        llb.HostIP(host="v6", ip="fd00::1"),
        llb.HostIP(host="cache", ip="10.0.0.3"),
    )
    assert options.ulimits == (
        llb.Ulimit(name="nofile", soft=1024, hard=2048),
        llb.Ulimit(name="nproc", soft=100, hard=100),
    )
    assert options.shm_size == 128 << 20
    assert options.cgroup_parent == "/builds"
    defaults = DockerfileOptions.from_attrs({})
    assert (defaults.ulimits, defaults.shm_size, defaults.cgroup_parent) == ((), 0, "")


def test_client_attributes_round_trip() -> None:
    options = DockerfileOptions(
        extra_hosts=(llb.HostIP(host="Db", ip="10.0.0.2"), llb.HostIP(host="v6", ip="::1")),
        ulimits=(llb.Ulimit(name="nofile", soft=1024, hard=2048),),
        shm_size=1 << 30,
        cgroup_parent="/builds/x",
    )
    attrs = dockerfile_attrs(options)
    assert attrs["add-hosts"] == "db=10.0.0.2,v6=::1"
    assert attrs["ulimit"] == "nofile=1024:2048"
    assert attrs["shm-size"] == str(1 << 30)
    assert attrs["cgroup-parent"] == "/builds/x"
    assert DockerfileOptions.from_attrs(attrs) == options
    assert not {"ulimit", "shm-size", "cgroup-parent", "add-hosts"} & set(
        dockerfile_attrs(DockerfileOptions())
    )


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"add-hosts": "db=nope"}, "add-hosts entry 'db=nope': invalid IP address"),
        ({"add-hosts": "db=host-gateway"}, "invalid IP address 'host-gateway'"),
        ({"ulimit": "nofile=2:1"}, "ulimit entry 'nofile=2:1'"),
        ({"ulimit": "bogus=1"}, "unknown ulimit 'bogus'"),
        ({"shm-size": "64m"}, "shm-size '64m': expected a number of bytes"),
        ({"shm-size": "-5"}, "must not be negative"),
    ],
)
def test_bad_attributes(attrs: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        DockerfileOptions.from_attrs(attrs)
