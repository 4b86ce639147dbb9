"""What a daemon build makes of the client's OCI layouts: store ids and digests instead
of paths (tags resolved from the client's own ``index.json``), the stores its session
offers, and errors or warnings that name the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.client import CacheSpec
from dockyard.client._job import Job
from dockyard.client._stores import absolute_layout, client_stores
from dockyard.core import BuildWarning, CollectingReporter, ContentError, NotFoundError, UsageError
from dockyard.frontend import DOCKERFILE_FRONTEND, DockerfileOptions

DIGEST = "sha256:" + "cd" * 32
OTHER = "sha256:" + "ef" * 32


def layout(root: Path, **tags: str) -> Path:
    entries = [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
         "size": 10, "annotations": {"org.opencontainers.image.ref.name": tag}}
        for tag, digest in tags.items()
    ]  # fmt: skip
    root.mkdir(parents=True)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return root


def job(
    *,
    cache_from: tuple[str, ...] = (),
    cache_to: tuple[str, ...] = (),
    contexts: dict[str, str] | None = None,
) -> Job:
    return Job(
        name="build",
        frontend=DOCKERFILE_FRONTEND,
        frontend_options=DockerfileOptions(named_contexts=contexts or {}),
        cache_from=tuple(CacheSpec.parse(t, export=False) for t in cache_from),
        cache_to=tuple(CacheSpec.parse(t, export=True) for t in cache_to),
    )


def test_relative_layout_paths_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_layout("oci-layout://rel/dir:v1") == f"oci-layout://{tmp_path}/rel/dir:v1"
    assert absolute_layout(f"oci-layout://l@{DIGEST}") == f"oci-layout://{tmp_path}/l@{DIGEST}"
    assert absolute_layout("oci-layout:///abs:v1") == "oci-layout:///abs:v1"
    assert absolute_layout("docker-image://busybox") == "docker-image://busybox"


async def test_caches_become_stores(tmp_path: Path) -> None:
    cache = layout(tmp_path / "cache", latest=DIGEST, v2=OTHER)
    original = job(
        cache_from=(
            f"type=local,src={cache}",
            f"type=local,src={cache},tag=v2",
            f"type=local,src={cache},digest={OTHER}",
            "type=registry,ref=r.example/c",
        ),
        cache_to=(f"type=local,dest={tmp_path / 'out'},mode=max,tag=v7", "type=inline"),
    )
    reporter = CollectingReporter()
    made = await client_stores(original, reporter)
    assert [dict(s.attrs) for s in made.job.cache_from] == [
        {"store": "cache-from-0", "digest": DIGEST},
        {"store": "cache-from-1", "digest": OTHER},
        {"store": "cache-from-2", "digest": OTHER},
        {"ref": "r.example/c"},
    ]
    assert [dict(s.attrs) for s in made.job.cache_to] == [
        {"mode": "max", "store": "cache-to-0"},
        {},
    ]
    assert made.stores["cache-to-0"].writable
    assert made.stores["cache-to-0"].tag == "v7"
    assert made.stores["cache-to-0"].path == tmp_path / "out"
    assert not made.stores["cache-from-0"].writable
    assert made.stores["cache-from-1"].path == cache
    # nothing of it names a path of the client any more
    sent = [v for s in (*made.job.cache_from, *made.job.cache_to) for v in s.attrs.values()]
    assert not any(str(tmp_path) in v for v in sent)
    assert not [e for e in reporter.events if isinstance(e, BuildWarning)]


async def test_an_unreadable_cache_from_is_a_warning_naming_the_flag(tmp_path: Path) -> None:
    cache = layout(tmp_path / "cache", v2=OTHER)
    reporter = CollectingReporter()
    made = await client_stores(
        job(cache_from=(f"type=local,src={tmp_path / 'nowhere'}", f"type=local,src={cache}")),
        reporter,
    )
    assert made.job.cache_from == ()
    assert made.stores == {}
    shorts = [e.short for e in reporter.events if isinstance(e, BuildWarning)]
    assert shorts == [
        f"--cache-from type=local,src={tmp_path / 'nowhere'}: cache directory "
        f"{tmp_path / 'nowhere'} does not exist; building without it",
        f"--cache-from type=local,src={cache}: no image tagged 'latest' in the OCI layout "
        f"{cache}; building without it",
    ]


async def test_a_cache_to_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=r"--cache-to type=local,dest=.*: .* is not a directory"):
        await client_stores(
            job(cache_to=(f"type=local,dest={tmp_path / 'file'}",)), CollectingReporter()
        )


async def test_oci_layout_contexts_become_stores_named_by_digest(tmp_path: Path) -> None:
    root = layout(tmp_path / "img", v1=DIGEST, latest=OTHER)
    made = await client_stores(
        job(
            contexts={
                "tagged": f"oci-layout://{root}:v1",
                "latest": f"oci-layout://{root}",
                "pinned": f"oci-layout://{root}:nosuch@{OTHER}",
                "image": "docker-image://busybox",
            }
        ),
        CollectingReporter(),
    )
    options = made.job.frontend_options
    assert isinstance(options, DockerfileOptions)
    named = dict(options.named_contexts)
    assert named["image"] == "docker-image://busybox"
    stores = {
        name: value.removeprefix("oci-layout://").split("@")
        for name, value in named.items()
        if name != "image"
    }
    assert {name: digest for name, (_, digest) in stores.items()} == {
        "tagged": DIGEST,
        "latest": OTHER,
        "pinned": OTHER,
    }
    for name, (store, _) in stores.items():
        assert made.stores[store].path == root
        assert not made.stores[store].writable
        assert str(tmp_path) not in named[name]
    assert len({store for store, _ in stores.values()}) == 3


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("oci-layout://{root}:v9", NotFoundError, "no image tagged 'v9'"),
        ("oci-layout://{tmp}/missing:v1", UsageError, "does not exist"),
        ("oci-layout://{root}/index.json", UsageError, "is not a directory"),
        ("oci-layout://{root}@sha256:1234", ContentError, "invalid blob digest"),
    ],
)
async def test_oci_layout_context_errors_name_the_flag(
    tmp_path: Path, value: str, error: type[Exception], message: str
) -> None:
    root = layout(tmp_path / "img", v1=DIGEST)
    text = value.format(root=root, tmp=tmp_path)
    with pytest.raises(error) as info:
        await client_stores(job(contexts={"base": text}), CollectingReporter())
    assert str(info.value).startswith(f"--build-context base={text}: ")
    assert message in str(info.value)
