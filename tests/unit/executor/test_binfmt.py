"""binfmt_misc parsing, ELF matching and the host-platform detection over a fake
binfmt_misc directory (tests/data/executor/binfmt); registering handlers into a fake
directory (root made up by monkeypatching ``os.geteuid``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.core import NotFoundError, Platform, UsageError
from dockyard.executor import (
    ELF_ARCHITECTURES,
    _binfmt,
    detect_host_platforms,
    host_platforms,
    install_handlers,
    parse_handler,
    parse_register_line,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "executor" / "binfmt"
PROC = DATA / "proc"
PPC = Platform.parse("linux/ppc64le")  # a native platform without the amd64 i386 probe


def _registrations() -> list[tuple[str, set[str]]]:
    rows = []
    for line in (DATA / "registrations.txt").read_text().splitlines():
        text, _, expected = line.partition(" => ")
        rows.append((text, set() if expected.strip() == "-" else set(expected.split())))
    return rows


@pytest.mark.parametrize(("line", "expected"), _registrations(), ids=lambda v: str(v)[:24])
def test_registration_matches_exactly_its_architectures(line: str, expected: set[str]) -> None:
    handler = parse_register_line(line)
    handled = {arch.name for arch in ELF_ARCHITECTURES if handler.handles(arch)}
    assert handled == expected


@pytest.mark.parametrize("line", (DATA / "bad-registrations.txt").read_text().splitlines())
def test_bad_registrations_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match="binfmt"):
        parse_register_line(line)


def test_proc_entries_parse_like_their_registration() -> None:
    proc = parse_handler("qemu-aarch64", (PROC / "qemu-aarch64").read_text())
    line = next(t for t, _ in _registrations() if t.startswith(":qemu-aarch64:"))
    registered = parse_register_line(line)
    assert (proc.magic, proc.mask, proc.offset, proc.interpreter) == (
        registered.magic,
        registered.mask,
        registered.offset,
        registered.interpreter,
    )
    assert proc.enabled
    assert proc.fix_binary
    assert proc.flags == "POF"
    assert not parse_handler("qemu-arm", (PROC / "qemu-arm").read_text()).fix_binary
    assert not parse_handler("qemu-riscv64", (PROC / "qemu-riscv64").read_text()).enabled
    ext = parse_handler("extension-exe", (PROC / "extension-exe").read_text())
    assert ext.extension == ".exe"
    assert not any(ext.handles(a) for a in ELF_ARCHITECTURES)
    with pytest.raises(ValueError, match="broken"):
        parse_handler("broken", (PROC / "broken").read_text())
    with pytest.raises(ValueError, match="differ"):
        parse_handler("x", "enabled\ninterpreter /x\nmagic 7f45\nmask ff\n")


def test_elf_headers_are_the_architectures_own() -> None:
    arm64 = next(a for a in ELF_ARCHITECTURES if a.name == "arm64")
    static, pie = arm64.headers()
    assert static[:4] == b"\x7fELF"
    assert static[4] == 2
    assert static[18:20] == b"\xb7\x00"
    assert static[16] == 2
    assert pie[16] == 3
    s390x = next(a for a in ELF_ARCHITECTURES if a.name == "s390x")
    assert s390x.headers()[0][18:20] == b"\x00\x16"  # big endian


def test_detection_over_a_fake_binfmt_misc() -> None:
    found = detect_host_platforms(PROC, native=PPC)
    runs = {str(s.platform): (s.handler.name if s.handler else "native") for s in found.supported}
    # arm without F, riscv64 disabled: not usable; s390x and arm64 with F are
    assert runs == {
        "linux/ppc64le": "native",
        "linux/arm64": "qemu-aarch64",
        "linux/s390x": "qemu-s390x",
    }
    arm64 = found.find(Platform.parse("linux/arm64/v8"))
    assert arm64 is not None
    assert not arm64.native
    assert found.find(Platform.parse("linux/arm/v7")) is None
    assert "lacks the F (fix-binary) flag" in found.why_not(Platform.parse("linux/arm/v7"))
    assert "/usr/libexec/qemu-binfmt/arm-binfmt-P" in found.why_not(Platform.parse("linux/arm"))
    assert "'qemu-riscv64' for linux/riscv64 is disabled" in found.why_not(
        Platform.parse("linux/riscv64")
    )
    assert "no binfmt_misc handler" in found.why_not(Platform.parse("linux/mips64le"))
    assert "no emulator is known" in found.why_not(Platform.parse("linux/sparc64"))
    # a typo (linux/amd6) is told what exists, not the same sentence twice
    hint = found.how_to_emulate(Platform.parse("linux/amd6"))
    assert "emulator" not in hint
    assert "linux/arm64" in hint
    assert "linux/riscv64" in hint
    hint = found.how_to_emulate(Platform.parse("linux/arm64"))
    assert "apt-get install qemu-user-static" in hint
    assert "dockyard debug binfmt --install arm64" in hint
    assert "qemu-aarch64.conf" in hint


def test_the_native_architecture_needs_no_handler(tmp_path: Path) -> None:
    found = detect_host_platforms(PROC, native=Platform.parse("linux/arm64"))
    native = found.find(Platform.parse("linux/arm64"))
    assert native is not None
    assert native.native
    assert len([s for s in found.supported if s.platform.architecture == "arm64"]) == 1


def test_arm_variants_come_with_an_arm_handler(tmp_path: Path) -> None:
    root = tmp_path / "binfmt"
    shutil.copytree(PROC, root)
    (root / "qemu-arm").write_text((root / "qemu-arm").read_text().replace("flags: OC", "flags: F"))
    found = detect_host_platforms(root, native=PPC)
    for variant in ("v5", "v6", "v7"):
        assert found.find(Platform.parse(f"linux/arm/{variant}")) is not None
    assert found.find(Platform.parse("linux/arm/v8")) is None


def test_unmounted_or_disabled_binfmt_misc_emulates_nothing(tmp_path: Path) -> None:
    found = detect_host_platforms(tmp_path / "empty", native=PPC)
    assert [str(s.platform) for s in found.supported] == ["linux/ppc64le"]
    assert "not mounted" in found.why_not(Platform.parse("linux/arm64"))
    root = tmp_path / "off"
    shutil.copytree(PROC, root)
    (root / "status").write_text("disabled\n")
    found = detect_host_platforms(root, native=PPC)
    assert len(found.supported) == 1
    assert "disabled" in found.why_not(Platform.parse("linux/arm64"))


def test_host_platforms_is_cached_until_a_wanted_platform_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "binfmt"
    shutil.copytree(PROC, root)
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(root))
    calls: list[Path] = []
    real = _binfmt.detect_host_platforms

    def counting(r: Path | None = None, *, native: Platform | None = None) -> object:
        assert r is not None
        calls.append(r)
        return real(r, native=PPC)

    monkeypatch.setattr(_binfmt, "detect_host_platforms", counting)
    arm64, arm = Platform.parse("linux/arm64"), Platform.parse("linux/arm/v7")
    assert host_platforms(wanted=arm64).find(arm64) is not None
    assert host_platforms(wanted=arm64).find(arm64) is not None
    assert calls == [root]  # the second answer came from the cache
    assert host_platforms(wanted=arm).find(arm) is None
    assert calls == [root, root]  # a platform not found: looked again
    (root / "qemu-arm").write_text((root / "qemu-arm").read_text().replace("flags: OC", "flags: F"))
    assert host_platforms(wanted=arm).find(arm) is not None  # registered meanwhile


# -- installing ---------------------------------------------------------------------------


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    """A fake /usr/lib/binfmt.d holding Debian's aarch64 and arm lines (arm without F)."""
    conf = tmp_path / "binfmt.d"
    conf.mkdir()
    interpreter = tmp_path / "qemu-aarch64-static"
    interpreter.write_bytes(b"")
    for text, _ in _registrations():
        name = text[1:].split(text[0])[0]
        if name in ("qemu-aarch64", "qemu-arm"):
            line = text.replace(f"/usr/libexec/qemu-binfmt/{name[5:]}-binfmt-P", str(interpreter))
            if name == "qemu-arm":
                line = line.replace(":OPF", ":OP")
            (conf / f"{name}.conf").write_text(f"# Debian's\n{line}\n")
    return conf


def test_install_refuses_without_root(
    tmp_path: Path, conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(UsageError, match="run as root"):
        install_handlers(["arm64"], root=tmp_path, conf_dir=conf_dir, mount=False)


def test_install_writes_registrations_with_the_f_flag(
    tmp_path: Path, conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    root = tmp_path / "binfmt"
    root.mkdir()
    (root / "register").write_text("")
    native = Platform.parse("linux/amd64")
    results = install_handlers(
        ["aarch64", "linux/arm/v7", "amd64"], root=root, conf_dir=conf_dir, native=native,
        mount=False,
    )  # fmt: skip
    assert [(r.arch, r.handler, r.action) for r in results] == [
        ("arm64", "qemu-aarch64", "registered"),
        ("arm", "qemu-arm", "registered"),
    ]
    # the fake register file keeps the last line written: arm's, now with F
    line = (root / "register").read_text()
    registered = parse_register_line(line)
    assert registered.name == "qemu-arm"
    assert registered.flags == "OPF"
    arm = next(a for a in ELF_ARCHITECTURES if a.name == "arm")
    assert registered.handles(arm)
    # an entry already there with F is left alone; one without F is replaced
    (root / "qemu-aarch64").write_text(
        (PROC / "qemu-aarch64")
        .read_text()
        .replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", str(tmp_path / "qemu-aarch64-static"))
    )
    (root / "qemu-arm").write_text("enabled\ninterpreter /x\nflags: \nmagic 7f\n")
    again = install_handlers(["arm64", "arm"], root=root, conf_dir=conf_dir, mount=False)
    assert [r.action for r in again] == ["present", "replaced"]
    assert (root / "qemu-arm").read_text() == "-1"  # the kernel's "remove" request


def test_install_errors_name_the_problem(
    tmp_path: Path, conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(UsageError, match="unknown architecture 'vax'"):
        install_handlers(["vax"], root=tmp_path, conf_dir=conf_dir, mount=False)
    with pytest.raises(NotFoundError, match="apt-get install qemu-user-static"):
        install_handlers(["riscv64"], root=tmp_path, conf_dir=conf_dir, mount=False)
    # "all" (or nothing): every architecture the conf directory has
    (tmp_path / "register").write_text("")
    done = install_handlers([], root=tmp_path, conf_dir=conf_dir, mount=False)
    assert sorted(r.arch for r in done) == ["arm", "arm64"]


# -- the command ---------------------------------------------------------------------------


def test_debug_binfmt_lists_the_platforms(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(PROC))
    assert main(["debug", "binfmt"]) == 0
    out, err = capsys.readouterr()
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["PLATFORM", "RUNS", "HANDLER", "INTERPRETER"]
    assert ["linux/s390x", "emulated", "qemu-s390x", "/usr/libexec/qemu-binfmt/s390x-binfmt-P"] in (
        lines
    )
    assert lines[1][1] == "native"
    assert "linux/arm/v7: not usable:" in err
    assert "lacks the F" in err
    assert main(["debug", "binfmt", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    unusable = {u["platform"]: u["reason"] for u in doc["unusable"]}
    assert "lacks the F" in unusable["linux/arm/v7"]
    assert "disabled" in unusable["linux/riscv64"]
    by_platform = {p["platform"]: p for p in doc["platforms"]}
    assert by_platform["linux/arm64"]["handler"] == "qemu-aarch64"
    assert main(["debug", "binfmt", "arm64"]) == 2  # names only with --install
    assert "--install" in capsys.readouterr().err


def test_debug_binfmt_without_binfmt_misc_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(tmp_path / "nothing"))
    assert main(["debug", "binfmt"]) == 0
    err = capsys.readouterr().err
    assert "not mounted" in err
    assert "dockyard debug binfmt --install" in err
