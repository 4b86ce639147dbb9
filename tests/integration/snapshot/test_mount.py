from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.core import DockyardError
from dockyard.snapshot import mount as mnt
from dockyard.snapshot.mount import MountError, is_mountpoint, mount_all, mounted, unmount
from dockyard.snapshot.types import Mount

pytestmark = pytest.mark.integration


def _layers(base: Path, n: int, name_len: int = 8) -> list[Path]:
    out = []
    for i in range(n):
        d = base / (f"{i:04d}-" + "x" * name_len)
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(str(i))
        (d / "top").write_text(str(i))
        out.append(d)
    return out


def _overlay(lowers: list[Path], upper: Path | None = None, work: Path | None = None) -> Mount:
    opts = ["lowerdir=" + ":".join(str(p) for p in lowers)]
    if upper is not None and work is not None:
        opts += [f"upperdir={upper}", f"workdir={work}"]
    return Mount(type="overlay", source="overlay", options=tuple(opts))


def test_overlay_rw_writes_to_upper(tmp_path: Path) -> None:
    lowers = _layers(tmp_path / "l", 3)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    # first lowerdir is the top layer
    with mounted([_overlay(lowers[::-1], upper, work)]) as root:
        assert (root / "top").read_text() == "2"
        assert sorted(p.name for p in root.iterdir()) == ["f0", "f1", "f2", "top"]
        (root / "new").write_text("hello")
        assert is_mountpoint(root)
    assert (upper / "new").read_text() == "hello"
    assert not root.exists()


def test_overlay_options_longer_than_a_page(tmp_path: Path) -> None:
    lowers = _layers(tmp_path / "l", 60, name_len=120)
    m = _overlay(lowers[::-1])
    assert len(",".join(m.options)) > 4096
    with mounted([m]) as root:
        assert len(list(root.iterdir())) == 61
        assert (root / "top").read_text() == "59"


def test_overlay_relative_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*args: object) -> None:
        raise mnt._NewApiUnsupported

    monkeypatch.setattr(mnt, "_overlay_new_api", unsupported)
    lowers = _layers(tmp_path / ("p" * 200) / ("q" * 200), 40, name_len=2)
    m = _overlay(lowers[::-1])
    assert len(",".join(m.options)) > 4096
    with mounted([m]) as root:
        assert (root / "top").read_text() == "39"
        assert (root / "f0").read_text() == "0"


def test_single_lower_without_upper_is_a_readonly_bind(tmp_path: Path) -> None:
    (lower,) = _layers(tmp_path / "l", 1)
    with mounted([_overlay([lower])]) as root:
        assert (root / "top").read_text() == "0"
        with pytest.raises(OSError):
            (root / "x").write_text("no")


def test_bind_readonly_and_rbind(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "file").write_text("data")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "deep").write_text("deep")
    mount_all([Mount(type="bind", source=str(inner), options=("rbind",))], src / "sub")
    try:
        with mounted([Mount(type="bind", source=str(src), options=("rbind", "ro"))]) as root:
            assert (root / "file").read_text() == "data"
            assert (root / "sub" / "deep").read_text() == "deep"
            with pytest.raises(OSError):
                (root / "file").write_text("x")
            with pytest.raises(OSError):  # read-only applies to sub-mounts too
                (root / "sub" / "deep").write_text("x")
        with mounted([Mount(type="bind", source=str(src), options=("bind", "rw"))]) as root:
            assert not (root / "sub" / "deep").exists()  # non-recursive bind
            (root / "file").write_text("changed")
        assert (src / "file").read_text() == "changed"
    finally:
        unmount(src / "sub")


def test_tmpfs_size_and_mode(tmp_path: Path) -> None:
    m = Mount(type="tmpfs", source="tmpfs", options=("size=1m", "mode=0700", "nosuid"))
    with mounted([m]) as root:
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        with pytest.raises(OSError):
            (root / "big").write_bytes(b"\0" * (2 << 20))


def test_unmount_stacked_and_nested(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    tm = Mount(type="tmpfs", source="tmpfs", options=())
    mount_all([tm, tm], target)
    (target / "sub").mkdir()
    mount_all([tm], target / "sub")
    unmount(target)
    assert not is_mountpoint(target)
    unmount(target)  # nothing mounted: fine


def test_errors_name_target_and_mount(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    bad = Mount(type="bind", source=str(tmp_path / "missing"), options=("rbind",))
    with pytest.raises(MountError) as info:
        mount_all([bad], target)
    assert str(target) in str(info.value)
    assert "missing" in str(info.value)
    assert isinstance(info.value, DockyardError)


def test_failed_mount_all_undoes_earlier_mounts(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    good = Mount(type="tmpfs", source="tmpfs", options=())
    bad = Mount(type="bind", source=str(tmp_path / "missing"), options=("rbind",))
    with pytest.raises(MountError):
        mount_all([good, bad], target)
    assert not is_mountpoint(target)


def test_too_many_lowers_is_refused(tmp_path: Path) -> None:
    lowers = [tmp_path / str(i) for i in range(mnt.MAX_OVERLAY_LOWERS + 1)]
    with pytest.raises(MountError, match="limit"):
        mount_all([_overlay(lowers)], tmp_path)
