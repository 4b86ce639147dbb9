"""``--ssh ID=KEYFILE`` with keys as ssh-keygen writes them: a key protected by a
passphrase is refused before the build, naming the flag, as buildx refuses it when it
parses the file (its agent cannot ask for a passphrase); malformed key text is never a
traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.core import UsageError
from dockyard.session import SshAgents, SshSpec
from dockyard.session._ssh import _check_private_key, _needs_passphrase

# (key type, ssh-keygen's -m format): OpenSSH's own, OpenSSL's PEM, PKCS#8
FORMATS = [("ed25519", "RFC4716"), ("ecdsa", "PEM"), ("ecdsa", "PKCS8")]


def keygen(path: Path, kind: str, form: str, passphrase: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-m", form, "-N", passphrase, "-C", "", "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


@pytest.mark.parametrize(("kind", "form"), FORMATS)
def test_a_key_with_a_passphrase_is_refused_naming_the_flag(
    tmp_path: Path, kind: str, form: str
) -> None:
    key = keygen(tmp_path / "id_key", kind, form, "passw")
    with pytest.raises(UsageError) as info:
        SshAgents([SshSpec.parse(f"deploy={key}")])
    message = str(info.value)
    assert message.startswith(f"--ssh deploy: {str(key)!r} is protected by a passphrase")
    assert "ssh-agent" in message


def test_the_short_passphrase_of_the_brief(tmp_path: Path) -> None:
    """``ssh-keygen -N pass`` (OpenSSH's format, the default)."""
    key = keygen(tmp_path / "id_ed25519", "ed25519", "RFC4716", "pass")
    with pytest.raises(UsageError, match="protected by a passphrase"):
        SshAgents([SshSpec(id="default", paths=(key,))])
    # one protected key among plain ones is enough to refuse the id
    plain = keygen(tmp_path / "plain", "ed25519", "RFC4716", "")
    with pytest.raises(UsageError, match=r"--ssh default: '.*id_ed25519' is protected"):
        SshAgents([SshSpec(id="default", paths=(plain, key))])


@pytest.mark.parametrize(("kind", "form"), FORMATS)
def test_a_key_without_a_passphrase_is_taken(tmp_path: Path, kind: str, form: str) -> None:
    key = keygen(tmp_path / "id_key", kind, form, "")
    assert not _needs_passphrase(key.read_bytes())
    assert SshAgents([SshSpec(id="x", paths=(key,))]).ids() == {"x"}


def test_crlf_line_ends_are_read_too(tmp_path: Path) -> None:
    key = keygen(tmp_path / "id_ecdsa", "ecdsa", "PEM", "passw")
    assert _needs_passphrase(key.read_bytes().replace(b"\n", b"\r\n"))
    key = keygen(tmp_path / "id_ed", "ed25519", "RFC4716", "pass")
    assert _needs_passphrase(key.read_bytes().replace(b"\n", b"\r\n"))


_PIECES = st.sampled_from(
    [
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
        b"-----END OPENSSH PRIVATE KEY-----\n",
        b"-----BEGIN RSA PRIVATE KEY-----\n",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
        b"Proc-Type: 4,ENCRYPTED\n",
        b"b3BlbnNzaC1rZXktdjEA",  # "openssh-key-v1\0"
        b"AAAABG5vbmU",  # a length and "none"
        b"/////w==",  # a length of 4 GiB
        b"\n",
        b"\r\n",
        b"=",
        b"-----",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=12)), max_size=12))
def test_key_text_soup_is_a_usage_error_or_taken(pieces: list[bytes]) -> None:
    text = b"".join(pieces)
    assert _needs_passphrase(text) in (True, False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=12)), max_size=12))
def test_key_files_of_soup_never_raise_anything_else(pieces: list[bytes]) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile() as f:
        f.write(b"".join(pieces))
        f.flush()
        error: UsageError | None = None
        try:
            _check_private_key("x", Path(f.name))
        except UsageError as exc:
            error = exc
        assert error is None or str(error).startswith("--ssh x: ")
