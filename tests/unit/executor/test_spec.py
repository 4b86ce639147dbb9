from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.core import UsageError
from dockyard.executor import (
    BindMount,
    HostEntry,
    NetworkMode,
    ProcessSpec,
    SecretMount,
    SecurityMode,
    TmpfsMount,
)
from dockyard.executor._etc import hosts_file, resolv_conf
from dockyard.executor._runtime import Runtime, RuntimeKind, host_capabilities
from dockyard.executor._spec import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    SpecMount,
    build_env,
    build_spec,
)
from dockyard.executor._users import ResolvedUser

ROOT = ResolvedUser(uid=0, gid=0, home="/root", name="root")


def spec(process: ProcessSpec, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "process": process,
        "user": ROOT,
        "root_path": "/bundle/rootfs",
        "root_readonly": False,
        "mounts": [],
        "host_capabilities": ALL_CAPABILITIES,
        "nofile": 1024,
    }
    args.update(kw)
    return build_spec(**args)


def test_sandbox_defaults() -> None:
    s = spec(ProcessSpec(args=("/bin/sh", "-c", "true")))
    proc = s["process"]
    assert proc["args"] == ["/bin/sh", "-c", "true"]
    assert proc["terminal"] is False
    assert proc["cwd"] == "/"
    assert proc["noNewPrivileges"] is True
    caps = proc["capabilities"]
    assert caps["bounding"] == list(DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert caps["ambient"] == caps["inheritable"] == []
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    linux = s["linux"]
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    assert "cgroupsPath" not in linux
    assert {"type": "network"} not in linux["namespaces"]  # host network by default
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    assert s["hostname"] == "dockyard"
    assert s["root"] == {"path": "/bundle/rootfs", "readonly": False}
    dests = [m["destination"] for m in s["mounts"]]
    assert dests == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    sysfs = s["mounts"][-1]
    assert "ro" in sysfs["options"]
    assert not any(m["type"] == "cgroup" for m in s["mounts"])


def test_network_none_gets_its_own_namespace() -> None:
    s = spec(ProcessSpec(args=("x",), network=NetworkMode.NONE))
    assert {"type": "network"} in s["linux"]["namespaces"]


def test_insecure_is_privileged_within_host_capabilities() -> None:
    host = [c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE"]
    s = spec(ProcessSpec(args=("x",), security=SecurityMode.INSECURE), host_capabilities=host)
    assert s["process"]["capabilities"]["bounding"] == host
    assert s["process"]["noNewPrivileges"] is False
    assert "maskedPaths" not in s["linux"]
    assert "readonlyPaths" not in s["linux"]
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "rw" in sysfs["options"]
    assert "ro" not in sysfs["options"]
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_default_caps_limited_by_host() -> None:
    s = spec(ProcessSpec(args=("x",)), host_capabilities=["CAP_CHOWN", "CAP_KILL"])
    assert s["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_KILL"]


def test_no_rlimits_when_inheriting() -> None:
    assert "rlimits" not in spec(ProcessSpec(args=("x",)), nofile=None)["process"]


def test_user_and_groups() -> None:
    user = ResolvedUser(uid=1000, gid=1000, additional_gids=(10, 50), home="/home/app")
    s = spec(ProcessSpec(args=("x",), user="app"), user=user)
    assert s["process"]["user"] == {
        "uid": 1000,
        "gid": 1000,
        "umask": 0o022,
        "additionalGids": [10, 50],
    }
    assert "HOME=/home/app" in s["process"]["env"]


def test_user_mounts_come_after_defaults() -> None:
    m = SpecMount(dest="/dev/shm", type="tmpfs", source="tmpfs", options=("size=1k",))
    s = spec(ProcessSpec(args=("x",)), mounts=[m])
    assert s["mounts"][-1] == {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["size=1k"],
    }


def test_env_defaults_and_overrides() -> None:
    p = ProcessSpec(args=("x",), env=("A=1", "PATH=/bin", "A=2", "EMPTY="), hostname="box")
    env = build_env(p, ROOT)
    assert env == ["PATH=/bin", "A=2", "EMPTY=", "HOSTNAME=box", "HOME=/root"]
    env = build_env(ProcessSpec(args=("x",), env=("HOME=/x", "HOSTNAME=h")), ROOT)
    assert env[0:2] == ["HOME=/x", "HOSTNAME=h"]
    assert env[2].startswith("PATH=/usr/local/sbin:")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"args": ()},
        {"args": ("x",), "env": ("NOEQUALS",)},
        {"args": ("x",), "env": ("=value",)},
        {"args": ("x",), "cwd": "relative"},
        {"args": ("x",), "hostname": ""},
        {"args": ("x",), "hostname": "has space"},
    ],
)
def test_invalid_process_specs(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        ProcessSpec(**kwargs)


def test_invalid_mounts_and_modes() -> None:
    with pytest.raises(UsageError):
        TmpfsMount(dest="relative")
    with pytest.raises(UsageError):
        TmpfsMount(dest="/x", size=-1)
    with pytest.raises(UsageError):
        BindMount(dest="/x", source=())
    with pytest.raises(UsageError):
        NetworkMode.parse("bridge")
    with pytest.raises(UsageError):
        SecurityMode.parse("yolo")
    assert NetworkMode.parse("none") is NetworkMode.NONE
    assert SecurityMode.parse("insecure") is SecurityMode.INSECURE


def test_secret_repr_hides_data() -> None:
    s = SecretMount(dest="/run/secrets/token", data=b"hunter2")
    assert "hunter2" not in repr(s)
    assert "7 bytes" in repr(s)


def test_bind_directory() -> None:
    b = BindMount.directory("/cache", Path("/var/cache/x"), readonly=True)
    assert b.source[0].type == "bind"
    assert b.source[0].source == "/var/cache/x"
    assert b.readonly


def test_host_entries() -> None:
    assert HostEntry.parse("db:10.0.0.2") == HostEntry(name="db", ip="10.0.0.2")
    assert HostEntry.parse("v6=::1") == HostEntry(name="v6", ip="::1")
    with pytest.raises(UsageError):
        HostEntry.parse("nohost")
    with pytest.raises(UsageError):
        HostEntry(name="x", ip="999.1.1.1")


def test_hosts_file() -> None:
    text = hosts_file("box", [HostEntry(name="db", ip="10.0.0.2")]).decode()
    assert text.splitlines() == [
        "127.0.0.1\tlocalhost box",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "10.0.0.2\tdb",
    ]


def test_resolv_conf(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_bytes(b"# c\nnameserver 10.1.1.1\nsearch example.com\noptions ndots:2\n")
    assert resolv_conf(NetworkMode.HOST, host) == host.read_bytes()
    assert resolv_conf(NetworkMode.NONE, host) == b"search example.com\noptions ndots:2\n"
    assert resolv_conf(NetworkMode.HOST, tmp_path / "missing") == b""


def test_host_capabilities_are_known_names() -> None:
    caps = host_capabilities()
    assert caps
    assert set(caps) <= set(ALL_CAPABILITIES)


def test_runtime_command_lines(tmp_path: Path) -> None:
    crun = Runtime(kind=RuntimeKind.CRUN, binary="/usr/bin/crun", state_dir=tmp_path / "s")
    argv = crun.run_argv("c1", tmp_path / "b", pid_file=tmp_path / "p", log=tmp_path / "l")
    assert argv[:4] == ["/usr/bin/crun", "--root", str(tmp_path / "s"), "--cgroup-manager=disabled"]
    assert argv[-1] == "c1"
    assert "--no-new-keyring" in argv
    runc = Runtime(kind=RuntimeKind.RUNC, binary="/usr/bin/runc", state_dir=tmp_path / "s")
    argv = runc.run_argv("c1", tmp_path / "b", pid_file=tmp_path / "p", log=tmp_path / "l")
    assert "--cgroup-manager=disabled" not in argv
    assert argv[argv.index("--log") + 1] == str(tmp_path / "l")


def test_runtime_error_reads_json_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(
        '{"level":"warning","msg":"meh"}\nnot json\n'
        '{"msg":"executable file `x` not found in $PATH","level":"error"}\n'
    )
    rt = Runtime(kind=RuntimeKind.CRUN, binary="crun", state_dir=tmp_path)
    assert rt.runtime_error(log) == "executable file `x` not found in $PATH"
    assert rt.runtime_error(tmp_path / "missing") == ""


def test_process_spec_repr_never_shows_env_values() -> None:
    from dockyard.executor import ProcessSpec

    spec = ProcessSpec(args=("true",), env=("TOKEN=hunter2-secret",))
    assert "hunter2-secret" not in repr(spec)
    assert "true" in repr(spec)
