"""SLSA provenance (BuildKit's predicates, v0.2 and v1) of a solved build.

:func:`capture_provenance` reads what a finished solve used: the sources its graph resolved (each
base image by reference and the digest it resolved to, git repositories with the
commit, http(s) files with their checksum, local directories by name), the secrets and
SSH agents its steps mounted and whether any step had network access; with ``steps``
(``mode=max``) also the LLB steps and the build description's source map.
:func:`provenance_predicate` makes the SLSA v0.2 predicate from that, the frontend and its
attributes (as BuildKit receives them) and the build's times, in BuildKit's field
order and with its rules; :func:`slsa1_predicate` turns it into the SLSA v1 predicate as
BuildKit converts it (``version=v1``):

- ``invocation.configSource``: ``entryPoint`` the Dockerfile's name (``filename``),
  ``uri`` a remote context (``context`` attribute, credentials masked) and ``digest``
  its commit or checksum — from the material of that URL, or, for a context the
  client fetched and serves as a directory, from the ``context-digest`` attribute
  (:data:`CONTEXT_DIGEST_ATTR`; the context is then a material too, and the directories
  the client served it from are no ``locals``, as BuildKit lists none for a remote
  context); ``vcs:*`` attributes (``vcs:source`` credentials masked) go to
  ``metadata.https://mobyproject.org/buildkit@v1#metadata.vcs``;
- ``invocation.parameters.args``: the attributes without host-specific ones
  (``platform``, ``image-resolve-mode``, ``cgroup-parent``, ``cache-imports``) or
  ``attest:*``. ``mode=min`` leaves out every ``build-arg:`` and ``label:`` (then
  ``completeness.parameters`` is false), secrets and SSH ids; ``mode=max`` keeps them
  and adds ``buildConfig`` (the LLB steps, the terminal one last, as BuildKit lists
  them) and the ``#metadata`` ``source`` (the Dockerfile, base64, and each step's
  line ranges in it) and ``layers`` (each step output's layer descriptors where its
  blobs are known). Dockyard goes further than BuildKit in
  ``max`` mode: a build argument whose name looks like a secret (``*_TOKEN``,
  ``PASSWORD``..., the rule of the ``SecretsUsedInArgOrEnv`` check) is left out, and
  its value is blanked wherever it appears in the steps and the source; and the
  credentials of any URL (``user:password@``: a proxy build argument, an ``ADD`` URL in a
  step's source identifier or in the Dockerfile's copy) are masked in the arguments,
  the steps and the source, as they are in the materials;
- ``materials``: images as package URLs (``pkg:docker/alpine@3.17?platform=...``) with
  the digest resolved, git and http URLs (credentials removed) with commit/checksum;
  ``completeness.materials`` is false when a local directory was read;
  ``metadata.https://mobyproject.org/buildkit@v1#hermetic`` is true only with complete
  materials and no step with network access (BuildKit's rule: a ``RUN`` without
  ``--network=none`` has it).
"""

from __future__ import annotations

import base64
import re
import secrets as _secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.core import Platform

from ._source import SourceOp

if TYPE_CHECKING:
    from dockyard.cache import ImmutableRef
    from dockyard.exporter import ProvenanceOptions
    from dockyard.llb import Definition
    from dockyard.solver import Edge, Job, Vertex

__all__ = [
    "BUILDKIT_BUILD_TYPE",
    "BUILDKIT_BUILD_TYPE_V1",
    "CONTEXT_DIGEST_ATTR",
    "ProvenanceCapture",
    "capture_provenance",
    "invocation_id",
    "provenance_predicate",
    "secret_looking",
    "slsa1_predicate",
    "step_layers",
]

BUILDKIT_BUILD_TYPE = "https://mobyproject.org/buildkit@v1"
BUILDKIT_BUILD_TYPE_V1 = (
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
)
"""``buildDefinition.buildType`` of BuildKit's SLSA v1 predicate."""
_METADATA_KEY = "https://mobyproject.org/buildkit@v1#metadata"
_HERMETIC_KEY = "https://mobyproject.org/buildkit@v1#hermetic"
_HOST_SPECIFIC = frozenset({"cgroup-parent", "image-resolve-mode", "platform", "cache-imports"})
_SESSION_ATTRS = frozenset({"local.session", "local.unique"})
_SECRET_NAME = re.compile(
    r"(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)",
    re.IGNORECASE,
)
_PUBLIC_NAME = re.compile(r"(?:_|^)(?:public)(?:_|$)", re.IGNORECASE)
_REDACTED = "****"
_HEX = re.compile(r"[0-9a-f]+")

#: The frontend attribute with the digest of a remote context (the ``context``
#: attribute's URL) that the client fetched and serves as a directory: ``sha1:COMMIT``
#: for git, ``sha256:HEX`` of the downloaded file for http. It fills
#: ``configSource.digest`` (and a material) as a URL the frontend fetched itself does.
CONTEXT_DIGEST_ATTR = "context-digest"

LayerChains = Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]
"""``#metadata.layers``: ``stepN:OUTPUT`` → layer chains, each a list of OCI
descriptors (``mediaType``, ``digest``, ``size``), bottom layer first."""


def secret_looking(name: str) -> bool:
    """Whether a build argument's name looks like it holds a secret."""
    return bool(_SECRET_NAME.search(name)) and not _PUBLIC_NAME.search(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenanceCapture:
    """What one platform's solve used (see the module docstring). ``materials`` are
    ``(uri, {algorithm: hex})`` in BuildKit's order (images, git, http; each sorted);
    ``secrets``/``ssh`` are ``(id, optional)``; ``steps``/``digest_mapping`` the LLB
    steps (``mode=max``) and ``source`` the ``#metadata.source`` object (the build
    description files and each step's locations in them; ``None``: none given)."""

    materials: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    locals: tuple[str, ...] = ()
    secrets: tuple[tuple[str, bool], ...] = ()
    ssh: tuple[tuple[str, bool], ...] = ()
    network: bool = False
    steps: tuple[dict[str, Any], ...] = ()
    digest_mapping: tuple[tuple[str, str], ...] = ()
    source: dict[str, Any] | None = field(default=None, compare=False)


def _vertices(edges: Sequence[Edge | None]) -> list[Vertex]:
    seen: dict[str, Vertex] = {}
    stack = [e.vertex for e in edges if e is not None]
    while stack:
        vertex = stack.pop()
        if vertex.digest in seen:
            continue
        seen[vertex.digest] = vertex
        stack.extend(i.vertex for i in vertex.inputs)
    return list(seen.values())


def _source_material(
    op: SourceOp, default_platform: Platform
) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    """``(kind, uri, digest set)`` of a resolved image, git or http source."""
    from dockyard.exporter import image_purl
    from dockyard.source import GitInstance, HttpInstance, ImageInstance

    instance = op.instance
    if isinstance(instance, ImageInstance) and instance.pinned is not None:
        digest = instance.pinned.digest
        platform = op.request.platform or instance.request.platform or default_platform
        uri = image_purl(instance.request.reference, platform)
        return "image", uri, ((digest.algorithm, digest.hex),)
    if isinstance(instance, GitInstance) and instance.resolved is not None:
        uri = instance.spec.remote.redacted
        if instance.spec.ref:
            uri += "#" + instance.spec.ref
        return "git", uri, (("sha1", instance.resolved.commit),)
    if isinstance(instance, HttpInstance) and instance.file is not None:
        digest = instance.file.digest
        return "http", instance.spec.redacted, ((digest.algorithm, digest.hex),)
    return None


def capture_provenance(
    definition: Definition,
    edges: Sequence[Edge | None],
    *,
    platform: Platform,
    steps: bool = False,
    read_locals: Sequence[str] = (),
    served_locals: Sequence[str] = (),
) -> ProvenanceCapture:
    """What the solve of ``edges`` (loaded from ``definition``) used; ``platform`` is
    an image source's when its op names none. ``steps``: also the LLB steps and the
    source map (``mode=max``'s ``buildConfig`` and ``#metadata.source``).
    ``read_locals``: the client directories the frontend read itself (the Dockerfile's,
    the context's ``.dockerignore``). ``served_locals``: directories that only serve a
    remote context the client fetched (recorded by its URL and digest instead): never
    listed."""
    kinds: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = {
        "image": set(),
        "git": set(),
        "http": set(),
    }
    local_names: set[str] = set(read_locals)
    for vertex in _vertices(edges):
        op = vertex.op
        if not isinstance(op, SourceOp):
            continue
        if op.request.scheme == "local":
            local_names.add(op.request.path)
            continue
        found = _source_material(op, platform)
        if found is not None:
            kind, uri, digest = found
            kinds[kind].add((uri, digest))
    local_names.difference_update(served_locals)
    secrets: set[tuple[str, bool]] = set()
    ssh: set[tuple[str, bool]] = set()
    network = False
    for node in definition:
        if node.kind != "exec":
            continue
        exec_op = node.op.exec
        if exec_op.network != 2:  # NONE
            network = True
        for mount in exec_op.mounts:
            if mount.mountType == 1:  # SECRET
                secrets.add((mount.secretOpt.ID, mount.secretOpt.optional))
            elif mount.mountType == 2:  # SSH
                ssh.add((mount.SSHOpt.ID, mount.SSHOpt.optional))
        for env in exec_op.secretenv:
            secrets.add((env.ID, env.optional))
    materials = tuple(m for kind in ("image", "git", "http") for m in sorted(kinds[kind]))
    llb_steps: tuple[dict[str, Any], ...] = ()
    mapping: tuple[tuple[str, str], ...] = ()
    source: dict[str, Any] | None = None
    if steps:
        llb_steps, mapping = _llb_steps(definition)
        source = _source_map(definition, dict(mapping))
    return ProvenanceCapture(
        materials=materials,
        locals=tuple(sorted(local_names)),
        secrets=tuple(sorted(secrets)),
        ssh=tuple(sorted(ssh)),
        network=network,
        steps=llb_steps,
        digest_mapping=mapping,
        source=source,
    )


def _llb_steps(
    definition: Definition,
) -> tuple[tuple[dict[str, Any], ...], tuple[tuple[str, str], ...]]:
    """``buildConfig.llbDefinition``: each op (inputs first, the terminal op last, as
    BuildKit walks them) as ``stepN`` with its op as protobuf JSON (without the
    session-specific attributes of local sources) and its inputs as ``stepN:index``."""
    from google.protobuf.json_format import MessageToDict

    nodes = definition.walk()
    ids = {str(n.digest): f"step{i}" for i, n in enumerate(nodes)}
    out: list[dict[str, Any]] = []
    for node in nodes:
        kind = node.kind
        op: dict[str, Any] = {}
        if kind:
            body = MessageToDict(getattr(node.op, kind))
            if kind == "source" and isinstance(body.get("attrs"), dict):
                attrs = {k: v for k, v in body["attrs"].items() if k not in _SESSION_ATTRS}
                if attrs:
                    body["attrs"] = attrs
                else:
                    del body["attrs"]
            op["Op"] = {kind: body}
        if node.op.HasField("platform"):
            op["platform"] = MessageToDict(node.op.platform)
        if node.op.HasField("constraints"):
            op["constraints"] = MessageToDict(node.op.constraints)
        step: dict[str, Any] = {"id": ids[str(node.digest)], "op": op}
        inputs = [f"{ids[str(i.digest)]}:{i.index}" for i in node.inputs if str(i.digest) in ids]
        if inputs:
            step["inputs"] = inputs
        out.append(step)
    return tuple(out), tuple(sorted(ids.items()))


def _source_map(definition: Definition, ids: Mapping[str, str]) -> dict[str, Any] | None:
    """``#metadata.source``: the build description files the Definition's source map
    holds (``infos``: filename, language, content as base64) and, by step id, the
    locations of each step in them — BuildKit's, present when the frontend gave a
    source map."""
    from google.protobuf.json_format import MessageToDict

    message = definition.to_pb()
    if not message.HasField("Source") or not message.Source.infos:
        return None
    locations: dict[str, Any] = {}
    for digest, where in sorted(message.Source.locations.items()):
        step = ids.get(digest)
        if step is not None:
            locations[step] = MessageToDict(where)
    infos: list[dict[str, Any]] = []
    for info in message.Source.infos:
        entry: dict[str, Any] = {}
        if info.filename:
            entry["filename"] = info.filename
        if info.language:
            entry["language"] = info.language
        if info.data:
            entry["data"] = bytes(info.data)  # base64 once secrets are blanked
        infos.append(entry)
    out: dict[str, Any] = {}
    if locations:
        out["locations"] = dict(sorted(locations.items()))  # as Go sorts map keys
    out["infos"] = infos
    return out


async def step_layers(
    job: Job, edge: Edge | None, digest_mapping: Sequence[tuple[str, str]], variants: Sequence[str]
) -> dict[str, list[list[dict[str, Any]]]]:
    """``#metadata.layers`` of a solve: for each step output the job still holds
    whose every layer has a compressed blob recorded in one of ``variants`` (an image
    export's, or an image source's as pulled), ``stepN:OUTPUT`` → one chain of layer
    descriptors, bottom first. Steps without results (a later step's cache hit spared
    them) or without known blobs are left out, as BuildKit leaves them."""
    from dockyard.cache import ImmutableRef as CacheRef

    ids = dict(digest_mapping)
    out: dict[str, list[list[dict[str, Any]]]] = {}
    if edge is None:
        return out
    for vertex in _vertices([edge]):
        step = ids.get(vertex.digest)
        if step is None:
            continue
        outputs = job.load(vertex).outputs or ()
        for index, ref in enumerate(outputs):
            if ref.released or not isinstance(ref.value, CacheRef):
                continue
            chain = await _layer_chain(ref.value, variants)
            if chain:
                out[f"{step}:{index}"] = [chain]
    return dict(sorted(out.items()))


async def _layer_chain(ref: ImmutableRef, variants: Sequence[str]) -> list[dict[str, Any]]:
    layers = await ref.layers()
    try:
        chain: list[dict[str, Any]] = []
        for layer in layers:
            blob = next((b for v in variants if (b := layer.blob(v)) is not None), None)
            if blob is None:
                return []
            chain.append(
                {"mediaType": blob.media_type, "digest": str(blob.digest), "size": blob.size}
            )
        return chain
    finally:
        for layer in layers:
            await layer.release()


def invocation_id() -> str:
    """A build invocation id as BuildKit makes them: 25 base-36 characters."""
    value = _secrets.randbits(128)
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(25):
        value, rem = divmod(value, 36)
        out += chars[rem]
    return out


def _format_time(epoch_ns: int) -> str:
    from dockyard.oci import format_timestamp

    return format_timestamp(epoch_ns)


def _redact_url(text: str) -> str:
    from dockyard.source import redact_url

    return redact_url(text) if "://" in text else text


def _scrub(value: Any, secrets: Sequence[tuple[str, str]]) -> Any:
    """``value`` with every secret-looking build argument's value blanked and the
    credentials of every URL masked (``https://user:password@``: a build argument such as
    ``HTTP_PROXY``, an ``ADD`` URL in a step's source identifier or in the Dockerfile's
    copy); bytes are written as base64, as Go writes them."""
    if isinstance(value, bytes):
        for _name, secret in secrets:
            if len(secret) >= 4:
                value = value.replace(secret.encode(), _REDACTED.encode())
        if b"@" in value:
            text = value.decode("utf-8", "surrogateescape")
            value = _redact_url(text).encode("utf-8", "surrogateescape")
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, str):
        for name, secret in secrets:
            if value == f"{name}={secret}":
                return f"{name}={_REDACTED}"
            if len(secret) >= 4 and secret in value:
                value = value.replace(secret, _REDACTED)
        return _redact_url(value) if "@" in value else value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


def provenance_predicate(
    captured: ProvenanceCapture,
    *,
    options: ProvenanceOptions,
    frontend: str,
    attrs: Mapping[str, str],
    builder_platform: Platform,
    started_ns: int,
    finished_ns: int,
    invocation: str,
    layers: LayerChains | None = None,
) -> dict[str, Any]:
    """The SLSA v0.2 predicate (a JSON object in BuildKit's field order, maps sorted)
    of one platform's build; see the module docstring for what each mode records.
    ``layers`` (``mode=max``): the steps' layer chains (:func:`step_layers`)."""
    args = {
        k: v for k, v in attrs.items() if k not in _HOST_SPECIFIC and not k.startswith("attest:")
    }
    config_source: dict[str, Any] = {}
    context_key = args.get("contextkey") or "context"
    context = args.pop(context_key, "")
    context_digest = _digest_set(args.pop(CONTEXT_DIGEST_ATTR, ""))
    materials = captured.materials
    if context:
        uri = _redact_url(context)
        config_source["uri"] = uri
        found = [digest for material, digest in materials if material == uri]
        if found:
            config_source["digest"] = dict(found[0])
        elif context_digest is not None:
            # the client fetched the context and served it as a directory: what it
            # fetched is a material, as when the frontend reads the URL itself
            config_source["digest"] = dict(context_digest)
            materials = _with_material(materials, uri, context_digest)
    filename = args.pop("filename", "")
    if filename:
        config_source["entryPoint"] = filename
    vcs = {
        k.removeprefix("vcs:"): _redact_url(v) if k == "vcs:source" else v
        for k, v in args.items()
        if k.startswith("vcs:") and v
    }
    for key in [k for k in args if k.startswith("vcs:")]:
        del args[key]
    for key, value in list(args.items()):
        if key.startswith("context:"):
            args[key] = _redact_url(value)
    complete_parameters = bool(frontend)
    hidden: list[tuple[str, str]] = []
    for key in list(args):
        if not key.startswith("build-arg:"):
            continue
        name = key.removeprefix("build-arg:")
        if secret_looking(name):
            hidden.append((name, args[key]))
    if options.mode == "min":
        for key in [k for k in args if k.startswith(("build-arg:", "label:"))]:
            del args[key]
            complete_parameters = False
    else:
        for name, _value in hidden:
            del args[f"build-arg:{name}"]
            complete_parameters = False
    blank = [(n, v) for n, v in hidden if v]
    args = _scrub(args, blank)
    parameters: dict[str, Any] = {}
    if frontend:
        parameters["frontend"] = frontend
    if args:
        parameters["args"] = dict(sorted(args.items()))
    if options.mode == "max":
        if captured.secrets:
            parameters["secrets"] = [_id_entry(i, o) for i, o in captured.secrets]
        if captured.ssh:
            parameters["ssh"] = [_id_entry(i, o) for i, o in captured.ssh]
    if captured.locals:
        parameters["locals"] = [{"name": name} for name in captured.locals]
    incomplete = bool(captured.locals)
    predicate: dict[str, Any] = {
        "builder": {"id": options.builder_id},
        "buildType": BUILDKIT_BUILD_TYPE,
    }
    if materials:
        predicate["materials"] = [{"uri": uri, "digest": dict(digest)} for uri, digest in materials]
    predicate["invocation"] = {
        "configSource": config_source,
        "parameters": parameters,
        "environment": {"platform": str(builder_platform)},
    }
    buildkit: dict[str, Any] = {}
    if vcs:
        buildkit["vcs"] = dict(sorted(vcs.items()))
    if options.mode == "max":
        if captured.steps:
            predicate["buildConfig"] = _scrub(
                {
                    "llbDefinition": list(captured.steps),
                    "digestMapping": dict(captured.digest_mapping),
                },
                blank,
            )
        if captured.source is not None:
            buildkit["source"] = _scrub(captured.source, blank)
        if layers:
            buildkit["layers"] = {k: [list(c) for c in v] for k, v in sorted(layers.items())}
    metadata: dict[str, Any] = {
        "buildInvocationID": invocation,
        "buildStartedOn": _format_time(started_ns),
        "buildFinishedOn": _format_time(finished_ns),
        "completeness": {
            "parameters": complete_parameters,
            "environment": True,
            "materials": not incomplete,
        },
        "reproducible": options.reproducible,
        _METADATA_KEY: buildkit,
    }
    if not incomplete and not captured.network:
        metadata[_HERMETIC_KEY] = True
    predicate["metadata"] = metadata
    return predicate


def _sorted_keys(value: Any) -> Any:
    """``value`` with the keys of every object sorted (how Go writes a map)."""
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def slsa1_predicate(predicate: Mapping[str, Any]) -> dict[str, Any]:
    """The SLSA v1 predicate (``https://slsa.dev/provenance/v1``) of a v0.2 one from
    :func:`provenance_predicate`, as BuildKit converts it: ``buildDefinition``
    (``buildType`` BuildKit's v1 definitions page, ``resolvedDependencies`` the
    materials, ``externalParameters`` the ``configSource`` — ``entryPoint`` as
    ``path`` — and the ``request`` parameters, ``internalParameters`` the
    ``buildConfig`` and the ``builderPlatform``) and ``runDetails`` (``builder.id``;
    ``metadata``: ``invocationId``, ``startedOn``, ``finishedOn`` and BuildKit's
    ``buildkit_metadata``, ``buildkit_hermetic``, ``buildkit_completeness``
    (``request``, ``resolvedDependencies``), ``buildkit_reproducible``)."""
    invocation = predicate["invocation"]
    old_source = invocation["configSource"]
    config_source: dict[str, Any] = {}
    if "uri" in old_source:
        config_source["uri"] = old_source["uri"]
    if "digest" in old_source:
        config_source["digest"] = old_source["digest"]
    if "entryPoint" in old_source:
        config_source["path"] = old_source["entryPoint"]
    internal: dict[str, Any] = {"builderPlatform": invocation["environment"]["platform"]}
    if "buildConfig" in predicate:
        internal["buildConfig"] = predicate["buildConfig"]
    definition: dict[str, Any] = {"buildType": BUILDKIT_BUILD_TYPE_V1}
    if predicate.get("materials"):
        definition["resolvedDependencies"] = [dict(m) for m in predicate["materials"]]
    definition["externalParameters"] = {
        "configSource": config_source,
        "request": invocation["parameters"],
    }
    # BuildKit writes internalParameters through a map: keys sorted at every level
    definition["internalParameters"] = _sorted_keys(internal)
    old = predicate["metadata"]
    completeness = old["completeness"]
    metadata: dict[str, Any] = {
        "invocationId": old["buildInvocationID"],
        "startedOn": old["buildStartedOn"],
        "finishedOn": old["buildFinishedOn"],
        "buildkit_metadata": old.get(_METADATA_KEY, {}),
    }
    if old.get(_HERMETIC_KEY):
        metadata["buildkit_hermetic"] = True
    metadata["buildkit_completeness"] = {
        "request": completeness["parameters"],
        "resolvedDependencies": completeness["materials"],
    }
    if old.get("reproducible"):
        metadata["buildkit_reproducible"] = True
    return {
        "buildDefinition": definition,
        "runDetails": {"builder": {"id": predicate["builder"]["id"]}, "metadata": metadata},
    }


_DIGEST_LENGTHS = {"sha1": 40, "sha256": 64, "sha512": 128}


def _digest_set(text: str) -> tuple[tuple[str, str], ...] | None:
    """``ALGORITHM:HEX`` (:data:`CONTEXT_DIGEST_ATTR`) as a digest set; ``None`` for
    anything else."""
    algorithm, _, value = text.partition(":")
    length = _DIGEST_LENGTHS.get(algorithm)
    if length is None or len(value) != length or not _HEX.fullmatch(value):
        return None
    return ((algorithm, value),)


def _with_material(
    materials: tuple[tuple[str, tuple[tuple[str, str], ...]], ...],
    uri: str,
    digest: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """``materials`` with the context's, in BuildKit's order (images, git, http; each
    sorted): a ``sha1`` digest is a git commit, any other an http download's."""

    def kind(entry: tuple[str, tuple[tuple[str, str], ...]]) -> int:
        uri, digest = entry
        if uri.startswith("pkg:"):
            return 0
        return 1 if digest and digest[0][0] == "sha1" else 2

    return tuple(sorted((*materials, (uri, digest)), key=lambda m: (kind(m), m)))


def _id_entry(ident: str, optional: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ident}
    if optional:
        out["optional"] = True
    return out
