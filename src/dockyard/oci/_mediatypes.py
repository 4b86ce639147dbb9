"""Media types of the OCI image spec and of Docker's image manifest v2 schema 2."""

from __future__ import annotations

from typing import Final

__all__ = ["MediaType"]


class MediaType:
    """The media types Dockyard reads and writes, with helpers to classify them.

    Media types are open-ended strings (registries carry artifacts of any type), so these
    are plain ``str`` constants rather than an enum.
    """

    OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDISTRIBUTABLE: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: Final = (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    )
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: Final = (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    )
    OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"

    DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_ZSTD: Final = "application/vnd.docker.image.rootfs.diff.tar.zstd"
    DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    DOCKER_SCHEMA1_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_SCHEMA1_SIGNED_MANIFEST: Final = (
        "application/vnd.docker.distribution.manifest.v1+prettyjws"
    )

    MANIFESTS: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
    INDEXES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
    CONFIGS: Final = frozenset({OCI_CONFIG, DOCKER_CONFIG})
    SCHEMA1: Final = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST})
    #: What a client sends in ``Accept`` to get any image manifest or index.
    ACCEPT_MANIFESTS: Final = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

    _LAYER_COMPRESSION: Final = {
        OCI_LAYER: "uncompressed",
        OCI_LAYER_GZIP: "gzip",
        OCI_LAYER_ZSTD: "zstd",
        OCI_LAYER_NONDISTRIBUTABLE: "uncompressed",
        OCI_LAYER_NONDISTRIBUTABLE_GZIP: "gzip",
        OCI_LAYER_NONDISTRIBUTABLE_ZSTD: "zstd",
        DOCKER_LAYER: "uncompressed",
        DOCKER_LAYER_GZIP: "gzip",
        DOCKER_LAYER_ZSTD: "zstd",
        DOCKER_FOREIGN_LAYER: "gzip",
    }

    @staticmethod
    def is_manifest(media_type: str) -> bool:
        """An image manifest (OCI or Docker schema 2)."""
        return media_type in MediaType.MANIFESTS

    @staticmethod
    def is_index(media_type: str) -> bool:
        """An OCI index or a Docker manifest list."""
        return media_type in MediaType.INDEXES

    @staticmethod
    def is_config(media_type: str) -> bool:
        return media_type in MediaType.CONFIGS

    @staticmethod
    def is_layer(media_type: str) -> bool:
        return media_type in MediaType._LAYER_COMPRESSION

    @staticmethod
    def layer_compression(media_type: str) -> str:
        """``"uncompressed"``, ``"gzip"`` or ``"zstd"``; ``ValueError`` for a non-layer type."""
        try:
            return MediaType._LAYER_COMPRESSION[media_type]
        except KeyError:
            raise ValueError(f"not a layer media type: {media_type!r}") from None

    @staticmethod
    def layer(compression: str, *, oci: bool = True) -> str:
        """The layer media type for ``compression`` in the OCI or the Docker family.

        Docker's family has no standard zstd type; ``oci=False`` with zstd gives the OCI
        type, as BuildKit does.
        """
        if compression == "gzip":
            return MediaType.OCI_LAYER_GZIP if oci else MediaType.DOCKER_LAYER_GZIP
        if compression == "zstd":
            return MediaType.OCI_LAYER_ZSTD
        if compression == "uncompressed":
            return MediaType.OCI_LAYER if oci else MediaType.DOCKER_LAYER
        raise ValueError(f"unknown layer compression {compression!r}")
