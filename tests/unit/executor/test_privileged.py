"""The device nodes of an insecure step (BuildKit's insecure spec)."""

from __future__ import annotations

from dockyard.executor._privileged import (
    PRIVILEGED_NODES,
    in_user_namespace,
    privileged_devices,
)


def test_the_nodes_and_loop_devices_up_to_seven_past_the_first_free_one() -> None:
    devices = privileged_devices(userns=lambda: False, free_loop=lambda: 3)
    chars = [d for d in devices if d["type"] == "c"]
    loops = [d for d in devices if d["type"] == "b"]
    assert [(d["path"], d["major"], d["minor"]) for d in chars] == list(PRIVILEGED_NODES)
    assert [d["path"] for d in loops] == [f"/dev/loop{i}" for i in range(11)]
    assert all((d["major"], d["minor"]) == (7, i) for i, d in enumerate(loops))
    assert all((d["fileMode"], d["uid"], d["gid"]) == (0o666, 0, 0) for d in devices)


def test_without_a_free_loop_answer_the_loop_devices_stop_at_loop7() -> None:
    devices = privileged_devices(userns=lambda: False, free_loop=lambda: None)
    assert [d["path"] for d in devices if d["type"] == "b"][-1] == "/dev/loop7"
    assert len([d for d in devices if d["type"] == "b"]) == 8


def test_none_in_a_user_namespace() -> None:
    assert privileged_devices(userns=lambda: True, free_loop=lambda: 0) == []


def test_user_namespace_detection_reads_the_uid_map() -> None:
    assert not in_user_namespace("         0          0 4294967295\n")
    assert in_user_namespace("         0       1000          1\n")
    assert in_user_namespace("0 100000 65536\n")
