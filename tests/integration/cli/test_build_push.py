"""``dockyard build --push`` to a real registry that wants a password, the credentials
coming from the client's docker config file (through the session)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.conftest import requirement_missing

from .conftest import EXAMPLE


def test_push_with_credentials_from_docker_config(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path(REGISTRY_BINARY).exists():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    registry = start_registry(tmp_path / "registry", auth="htpasswd", tls=True)
    try:
        user, password = next(iter(registry.users.items()))
        ref = registry.ref("greeting:pushed")
        meta = tmp_path / "meta.json"
        # no credentials: refused, naming the registry
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-docker-config"))
        assert (
            main(["build", "--state-dir", str(state), "-q", "-t", ref, "--push", str(EXAMPLE)]) == 1
        )
        refused = capsys.readouterr().err
        assert f"registry {registry.host} requires authentication" in refused, refused
        assert "Traceback" not in refused

        docker_config = tmp_path / "docker-config"
        docker_config.mkdir()
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        (docker_config / "config.json").write_text(
            json.dumps({"auths": {registry.host: {"auth": auth}}})
        )
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
        code = main(
            ["build", "--state-dir", str(state), "--progress", "plain", "-t", ref, "--push",
             "--metadata-file", str(meta), str(EXAMPLE)]
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 0, err
        assert password not in err
        digest = json.loads(meta.read_text())["containerimage.digest"]
        assert f"({json.loads(meta.read_text())['containerimage.config.digest']}) pushed" in err

        request = urllib.request.Request(
            f"{registry.url}/v2/greeting/manifests/pushed",
            headers={
                "Authorization": f"Basic {auth}",
                "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                "application/vnd.oci.image.manifest.v1+json",
            },
        )
        context = (
            ssl.create_default_context(cafile=str(registry.tls.ca_cert)) if registry.tls else None
        )
        with urllib.request.urlopen(request, context=context) as answer:
            assert answer.headers["Docker-Content-Digest"] == digest
    finally:
        registry.stop()
