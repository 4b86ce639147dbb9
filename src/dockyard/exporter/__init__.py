"""Layer 5: exporters, BuildKit's shape — options parsed at the edge into frozen values,
``resolve(options, services)`` → an instance → ``await instance.export(request)`` →
:class:`ExportResponse` (the ``--metadata-file`` keys buildx writes).

- ``local`` (:class:`LocalExport`): the result's files into a directory (modes, symlinks,
  hard links; owners when root);
- ``tar`` (:class:`TarExport`): the files as one deterministic tar stream;
- ``image``/``registry`` (:class:`ImageExport`): an image in the local image store under
  each name, pushed with ``push=true``;
- ``oci`` (:class:`OciExport`) and ``docker`` (:class:`DockerExport`): image archives that
  ``skopeo``/``umoci`` and ``docker load`` read.

A request's :class:`Attestation` values (SLSA provenance, asked for with
:class:`ProvenanceOptions`; SPDX SBOMs, asked for with :class:`SbomOptions`) are stored
as BuildKit stores them: an attestation manifest per platform in the image's index, a
``provenance.json`` / ``sbom.spdx.json`` beside ``local``/``tar`` files. The built-in SBOM
scanner (:func:`scan_rootfs`) reads the package databases of a root filesystem;
:func:`read_sbom_statements` takes the statements an SBOM generator image wrote.

Images are made from the result's layer chain (each record with changes is a layer;
empty ones are left out and their history entries marked ``empty_layer``), with layer
blobs compressed once per variant and remembered on the cache records (gzip on every
core, zstd with worker threads, eStargz — :class:`EStargzWriter`, BuildKit's lossless
layout with its TOC and footer — on the gzip pool). ``SOURCE_DATE_EPOCH`` caps the config's and history's
times; with ``rewrite-timestamp=true`` also file times inside new layers.

:func:`load_archive` and :func:`write_archive` serve ``dockyard image load``/``save``.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._options import (
    Annotation,
    AnnotationKind,
    ClientTarget,
    Compression,
    CompressionOptions,
    Dest,
    DockerExport,
    ExportOptions,
    ImageExport,
    ImageOptions,
    LocalExport,
    LocalPath,
    OciExport,
    Stdout,
    TarExport,
    parse_annotation,
    parse_exporter,
    parse_output,
)

if TYPE_CHECKING:
    from ._archive import ArchiveImage, LoadedImage, index_entry, load_archive, write_archive
    from ._attest import (
        PROVENANCE_ATTR,
        SBOM_ATTR,
        SBOM_BUILTIN,
        SLSA_PROVENANCE_V02,
        SLSA_PROVENANCE_V1,
        SPDX_DOCUMENT,
        Attestation,
        LatePredicate,
        ProvenanceMode,
        ProvenanceOptions,
        ProvenanceVersion,
        SbomOptions,
        attest_type,
        image_purl,
        parse_attest_flag,
        parse_provenance_flag,
        parse_sbom_attest,
        parse_sbom_flag,
    )
    from ._compress import (
        LayerCompressor,
        ParallelGzip,
        compression_of,
        new_compressor,
        open_decompressed,
    )
    from ._dest import open_stream
    from ._estargz import EStargzInfo, EStargzWriter
    from ._exporters import (
        DockerExporter,
        ImageExporter,
        LocalExporter,
        OciExporter,
        TarExporter,
        resolve,
    )
    from ._image import (
        CommittedImage,
        default_config,
        normalize_history,
        oci_manifest,
        parse_timestamp,
        patch_config,
    )
    from ._layers import EMPTY_TAR_DIGESTS, ExportedLayer, IngestSink, export_layers
    from ._progress import Progress, Step
    from ._sbom import SbomTarget, read_sbom_statements, sbom_attestation, scan_rootfs
    from ._tree import copy_into, write_tree_tar, write_trees_tar
    from .types import (
        INLINE_CACHE_KEY,
        MULTI_PLATFORM_DOCKER,
        ExporterInstance,
        ExportRequest,
        ExportResponse,
        ExportServices,
        InlineCache,
        PlatformExport,
        platform_dir,
    )

# The machinery loads on first use: parsing ``--output`` costs no compressor, cache or
# tar code (the CLI parses options before it opens an engine).
_LAZY = {
    "PROVENANCE_ATTR": "._attest",
    "SBOM_ATTR": "._attest",
    "SBOM_BUILTIN": "._attest",
    "SPDX_DOCUMENT": "._attest",
    "SbomOptions": "._attest",
    "attest_type": "._attest",
    "parse_sbom_attest": "._attest",
    "parse_sbom_flag": "._attest",
    "SbomTarget": "._sbom",
    "read_sbom_statements": "._sbom",
    "scan_rootfs": "._sbom",
    "sbom_attestation": "._sbom",
    "SLSA_PROVENANCE_V02": "._attest",
    "SLSA_PROVENANCE_V1": "._attest",
    "Attestation": "._attest",
    "LatePredicate": "._attest",
    "ProvenanceMode": "._attest",
    "ProvenanceOptions": "._attest",
    "ProvenanceVersion": "._attest",
    "image_purl": "._attest",
    "parse_attest_flag": "._attest",
    "parse_provenance_flag": "._attest",
    "ArchiveImage": "._archive",
    "LoadedImage": "._archive",
    "index_entry": "._archive",
    "load_archive": "._archive",
    "write_archive": "._archive",
    "LayerCompressor": "._compress",
    "ParallelGzip": "._compress",
    "compression_of": "._compress",
    "new_compressor": "._compress",
    "open_decompressed": "._compress",
    "open_stream": "._dest",
    "EStargzInfo": "._estargz",
    "EStargzWriter": "._estargz",
    "DockerExporter": "._exporters",
    "ImageExporter": "._exporters",
    "LocalExporter": "._exporters",
    "OciExporter": "._exporters",
    "TarExporter": "._exporters",
    "resolve": "._exporters",
    "CommittedImage": "._image",
    "default_config": "._image",
    "normalize_history": "._image",
    "oci_manifest": "._image",
    "parse_timestamp": "._image",
    "patch_config": "._image",
    "EMPTY_TAR_DIGESTS": "._layers",
    "ExportedLayer": "._layers",
    "IngestSink": "._layers",
    "export_layers": "._layers",
    "Progress": "._progress",
    "Step": "._progress",
    "copy_into": "._tree",
    "write_tree_tar": "._tree",
    "write_trees_tar": "._tree",
    "INLINE_CACHE_KEY": ".types",
    "MULTI_PLATFORM_DOCKER": ".types",
    "ExporterInstance": ".types",
    "ExportRequest": ".types",
    "ExportResponse": ".types",
    "ExportServices": ".types",
    "InlineCache": ".types",
    "PlatformExport": ".types",
    "platform_dir": ".types",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "EMPTY_TAR_DIGESTS",
    "INLINE_CACHE_KEY",
    "MULTI_PLATFORM_DOCKER",
    "PROVENANCE_ATTR",
    "SBOM_ATTR",
    "SBOM_BUILTIN",
    "SLSA_PROVENANCE_V02",
    "SLSA_PROVENANCE_V1",
    "SPDX_DOCUMENT",
    "Annotation",
    "AnnotationKind",
    "ArchiveImage",
    "Attestation",
    "ClientTarget",
    "CommittedImage",
    "Compression",
    "CompressionOptions",
    "Dest",
    "DockerExport",
    "DockerExporter",
    "EStargzInfo",
    "EStargzWriter",
    "ExportOptions",
    "ExportRequest",
    "ExportResponse",
    "ExportServices",
    "ExportedLayer",
    "ExporterInstance",
    "ImageExport",
    "ImageExporter",
    "ImageOptions",
    "IngestSink",
    "InlineCache",
    "LatePredicate",
    "LayerCompressor",
    "LoadedImage",
    "LocalExport",
    "LocalExporter",
    "LocalPath",
    "OciExport",
    "OciExporter",
    "ParallelGzip",
    "PlatformExport",
    "Progress",
    "ProvenanceMode",
    "ProvenanceOptions",
    "ProvenanceVersion",
    "SbomOptions",
    "SbomTarget",
    "Stdout",
    "Step",
    "TarExport",
    "TarExporter",
    "attest_type",
    "compression_of",
    "copy_into",
    "default_config",
    "export_layers",
    "image_purl",
    "index_entry",
    "load_archive",
    "new_compressor",
    "normalize_history",
    "oci_manifest",
    "open_decompressed",
    "open_stream",
    "parse_annotation",
    "parse_attest_flag",
    "parse_exporter",
    "parse_output",
    "parse_provenance_flag",
    "parse_sbom_attest",
    "parse_sbom_flag",
    "parse_timestamp",
    "patch_config",
    "platform_dir",
    "read_sbom_statements",
    "resolve",
    "sbom_attestation",
    "scan_rootfs",
    "write_archive",
    "write_tree_tar",
    "write_trees_tar",
]
