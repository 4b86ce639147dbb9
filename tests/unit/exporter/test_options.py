from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core import Platform, UsageError
from dockyard.exporter import (
    AnnotationKind,
    ClientTarget,
    Compression,
    CompressionOptions,
    DockerExport,
    ImageExport,
    LocalExport,
    LocalPath,
    OciExport,
    Stdout,
    TarExport,
    parse_exporter,
    parse_output,
)
from dockyard.registry import Reference


def test_shorthands() -> None:
    assert parse_output("out") == LocalExport(dest=LocalPath(path=Path("out")))
    assert parse_output("-") == TarExport(dest=Stdout())
    assert parse_output("dest=out") == LocalExport(dest=LocalPath(path=Path("out")))


def test_local_and_tar() -> None:
    assert parse_output("type=local,dest=/tmp/x") == LocalExport(
        dest=LocalPath(path=Path("/tmp/x"))
    )
    assert parse_output("type=tar,dest=-") == TarExport(dest=Stdout())
    assert parse_output("type=tar,dest=a.tar,source-date-epoch=10") == TarExport(
        dest=LocalPath(path=Path("a.tar")), source_date_epoch=10
    )
    assert parse_output("type=tar,dest=session:out0") == TarExport(dest=ClientTarget(name="out0"))


def test_image_options() -> None:
    opts = parse_output(
        'type=image,"name=app:1,reg.example:5000/team/app",push=true,compression=zstd,'
        "compression-level=9,force-compression=true,oci-mediatypes=true,"
        "rewrite-timestamp=true,annotation.org.opencontainers.image.title=App,"
        "annotation-manifest-descriptor.d=1,annotation[linux/arm64].only=arm,"
        "registry.insecure=true,store=false,name-canonical=true"
    )
    assert isinstance(opts, ImageExport)
    assert opts.push
    assert opts.insecure
    assert not opts.store
    assert opts.name_canonical
    image = opts.image
    assert image.names == (
        Reference.parse("docker.io/library/app:1"),
        Reference.parse("reg.example:5000/team/app:latest"),
    )
    assert image.compression == CompressionOptions(type=Compression.ZSTD, level=9, force=True)
    assert image.oci_mediatypes is True
    assert image.rewrite_timestamp
    amd = Platform.parse("linux/amd64")
    arm = Platform.parse("linux/arm64")
    assert image.annotations_for(AnnotationKind.MANIFEST, amd) == {
        "org.opencontainers.image.title": "App"
    }
    assert image.annotations_for(AnnotationKind.MANIFEST, arm) == {
        "org.opencontainers.image.title": "App",
        "only": "arm",
    }
    assert image.annotations_for(AnnotationKind.MANIFEST_DESCRIPTOR, amd) == {"d": "1"}


def test_registry_type_pushes_and_needs_a_name() -> None:
    opts = parse_output("type=registry,name=localhost:5000/app")
    assert isinstance(opts, ImageExport)
    assert opts.push
    with pytest.raises(UsageError, match="needs name="):
        parse_output("type=registry")
    with pytest.raises(UsageError, match="needs name="):
        parse_output("type=image,push=true")


def test_defaults_and_empty_bools() -> None:
    opts = parse_output("type=image,name=app,push=")
    assert isinstance(opts, ImageExport)
    assert opts.push  # an empty value of a boolean means true (BuildKit)
    assert opts.store
    assert opts.image.compression == CompressionOptions()
    assert not opts.image.use_oci(False)
    assert opts.image.use_oci(True)


def test_zstd_and_descriptor_annotations_force_oci_types() -> None:
    zstd = parse_output("type=image,compression=zstd")
    assert isinstance(zstd, ImageExport)
    assert zstd.image.use_oci(False)
    annotated = parse_output("type=docker,dest=x.tar,annotation-manifest-descriptor.a=b")
    assert isinstance(annotated, DockerExport)
    assert annotated.image.use_oci(False)
    plain = parse_output("type=image,oci-mediatypes=false")
    assert isinstance(plain, ImageExport)
    assert not plain.image.use_oci(True)


def test_oci_and_docker() -> None:
    oci = parse_output("type=oci,dest=out.tar,name=app")
    assert oci == OciExport(
        dest=LocalPath(path=Path("out.tar")),
        image=parse_output("type=oci,dest=out.tar,name=app").image,  # type: ignore[union-attr]
    )
    assert isinstance(oci, OciExport)
    assert oci.tar
    layout = parse_output("type=oci,dest=dir,tar=false")
    assert isinstance(layout, OciExport)
    assert not layout.tar
    docker = parse_output("type=docker,dest=-")
    assert isinstance(docker, DockerExport)
    assert docker.dest == Stdout()


def test_variants() -> None:
    assert CompressionOptions().variant() == "gzip"
    assert CompressionOptions(level=6).variant() == "gzip"
    assert CompressionOptions(level=9).variant() == "gzip-9"
    assert CompressionOptions(type=Compression.ZSTD).variant(1700000000) == "zstd;epoch=1700000000"
    assert CompressionOptions(type=Compression.UNCOMPRESSED).variant() == "uncompressed"
    assert CompressionOptions(type=Compression.ZSTD).effective_level == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("type=nope", "unknown output type"),
        ("type=local", "needs dest="),
        ("type=local,dest=-", "cannot write to stdout"),
        ("type=tar,dest=x,foo=bar", "unknown option"),
        ("type=image,nme=app", "unknown option"),
        ("type=image,push=maybe", "invalid value 'maybe' for push"),
        ("type=image,compression=lz4", "unsupported compression"),
        ("type=image,compression-level=x", "expected an integer"),
        ("type=image,compression-level=10", "out of range for gzip"),
        ("type=image,compression=zstd,compression-level=30", "out of range for zstd"),
        ("type=image,compression=uncompressed,compression-level=1", "needs compression="),
        ("type=image,name=UPPER", "invalid image name"),
        ("type=image,name=app@sha256:" + "a" * 64, "cannot have a digest"),
        ("type=image,annotation-bogus.x=1", "invalid annotation"),
        ("type=image,annotation[linux/a/b/c].x=1", "invalid annotation"),
        ("type=oci,dest=-,tar=false", "needs a directory"),
        ("type=tar,dest=x,dest=y", "given twice"),
        ("type=tar,dest=x,source-date-epoch=-1", "invalid source-date-epoch"),
        ("type=image,name", "expected key=value"),
        ("push=true", "needs type="),
    ],
)
def test_bad_input(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        parse_output(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "type=local,dest=out",
        "type=tar,dest=-,source-date-epoch=5",
        "type=image,name=a:1,push=true,compression=zstd,compression-level=5,force-compression=true",
        "type=image,store=false,registry.insecure=true,rewrite-timestamp=true,annotation.k=v",
        "type=image,dangling-name-prefix=scratch,name-canonical=true,annotation[linux/arm64].k=v",
        "type=oci,dest=o.tar,name=a,oci-mediatypes=false,annotation-index.k=v",
        "type=docker,dest=d,tar=false,annotation-manifest-descriptor.k=v",
    ],
)
def test_attrs_round_trip(spec: str) -> None:
    opts = parse_output(spec)
    kind = type(opts).type_name
    assert parse_exporter(kind, opts.to_attrs()) == opts
