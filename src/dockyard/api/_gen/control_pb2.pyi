import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from dockyard.api._gen import ops_pb2 as _ops_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SolveRequest(_message.Message):
    __slots__ = ("ref", "definition", "session", "frontend", "frontend_attrs", "cache", "entitlements", "frontend_inputs", "exporters", "debug_shell")
    class FrontendAttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FrontendInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_ATTRS_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENTS_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_INPUTS_FIELD_NUMBER: _ClassVar[int]
    EXPORTERS_FIELD_NUMBER: _ClassVar[int]
    DEBUG_SHELL_FIELD_NUMBER: _ClassVar[int]
    ref: str
    definition: bytes
    session: str
    frontend: str
    frontend_attrs: _containers.ScalarMap[str, str]
    cache: CacheOptions
    entitlements: _containers.RepeatedScalarFieldContainer[str]
    frontend_inputs: _containers.ScalarMap[str, bytes]
    exporters: _containers.RepeatedCompositeFieldContainer[Exporter]
    debug_shell: DebugShell
    def __init__(self, ref: _Optional[str] = ..., definition: _Optional[bytes] = ..., session: _Optional[str] = ..., frontend: _Optional[str] = ..., frontend_attrs: _Optional[_Mapping[str, str]] = ..., cache: _Optional[_Union[CacheOptions, _Mapping]] = ..., entitlements: _Optional[_Iterable[str]] = ..., frontend_inputs: _Optional[_Mapping[str, bytes]] = ..., exporters: _Optional[_Iterable[_Union[Exporter, _Mapping]]] = ..., debug_shell: _Optional[_Union[DebugShell, _Mapping]] = ...) -> None: ...

class DebugShell(_message.Message):
    __slots__ = ("args", "on_error", "on_success")
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ON_ERROR_FIELD_NUMBER: _ClassVar[int]
    ON_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    args: _containers.RepeatedScalarFieldContainer[str]
    on_error: bool
    on_success: bool
    def __init__(self, args: _Optional[_Iterable[str]] = ..., on_error: _Optional[bool] = ..., on_success: _Optional[bool] = ...) -> None: ...

class Exporter(_message.Message):
    __slots__ = ("type", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    type: str
    attrs: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[str] = ..., attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CacheOptions(_message.Message):
    __slots__ = ("exports", "imports")
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    exports: _containers.RepeatedCompositeFieldContainer[CacheOptionsEntry]
    imports: _containers.RepeatedCompositeFieldContainer[CacheOptionsEntry]
    def __init__(self, exports: _Optional[_Iterable[_Union[CacheOptionsEntry, _Mapping]]] = ..., imports: _Optional[_Iterable[_Union[CacheOptionsEntry, _Mapping]]] = ...) -> None: ...

class CacheOptionsEntry(_message.Message):
    __slots__ = ("type", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    type: str
    attrs: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[str] = ..., attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SolveResponse(_message.Message):
    __slots__ = ("exporter_response", "replayable", "replay_checks")
    class ExporterResponseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXPORTER_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    REPLAYABLE_FIELD_NUMBER: _ClassVar[int]
    REPLAY_CHECKS_FIELD_NUMBER: _ClassVar[int]
    exporter_response: _containers.ScalarMap[str, str]
    replayable: bool
    replay_checks: _containers.RepeatedCompositeFieldContainer[TagCheck]
    def __init__(self, exporter_response: _Optional[_Mapping[str, str]] = ..., replayable: _Optional[bool] = ..., replay_checks: _Optional[_Iterable[_Union[TagCheck, _Mapping]]] = ...) -> None: ...

class TagCheck(_message.Message):
    __slots__ = ("reference", "urls", "verify", "digest", "scope")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    URLS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    urls: _containers.RepeatedScalarFieldContainer[str]
    verify: bool
    digest: str
    scope: str
    def __init__(self, reference: _Optional[str] = ..., urls: _Optional[_Iterable[str]] = ..., verify: _Optional[bool] = ..., digest: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("vertexes", "statuses", "logs", "warnings")
    VERTEXES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    vertexes: _containers.RepeatedCompositeFieldContainer[Vertex]
    statuses: _containers.RepeatedCompositeFieldContainer[VertexStatus]
    logs: _containers.RepeatedCompositeFieldContainer[VertexLog]
    warnings: _containers.RepeatedCompositeFieldContainer[VertexWarning]
    def __init__(self, vertexes: _Optional[_Iterable[_Union[Vertex, _Mapping]]] = ..., statuses: _Optional[_Iterable[_Union[VertexStatus, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[VertexLog, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[VertexWarning, _Mapping]]] = ...) -> None: ...

class Vertex(_message.Message):
    __slots__ = ("digest", "inputs", "name", "cached", "started", "completed", "error", "progress_group")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_GROUP_FIELD_NUMBER: _ClassVar[int]
    digest: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    name: str
    cached: bool
    started: _timestamp_pb2.Timestamp
    completed: _timestamp_pb2.Timestamp
    error: str
    progress_group: _ops_pb2.ProgressGroup
    def __init__(self, digest: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., cached: _Optional[bool] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., progress_group: _Optional[_Union[_ops_pb2.ProgressGroup, _Mapping]] = ...) -> None: ...

class VertexStatus(_message.Message):
    __slots__ = ("id", "vertex", "name", "current", "total", "timestamp", "started", "completed")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERTEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    id: str
    vertex: str
    name: str
    current: int
    total: int
    timestamp: _timestamp_pb2.Timestamp
    started: _timestamp_pb2.Timestamp
    completed: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., vertex: _Optional[str] = ..., name: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VertexLog(_message.Message):
    __slots__ = ("vertex", "timestamp", "stream", "msg")
    VERTEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    vertex: str
    timestamp: _timestamp_pb2.Timestamp
    stream: int
    msg: bytes
    def __init__(self, vertex: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream: _Optional[int] = ..., msg: _Optional[bytes] = ...) -> None: ...

class VertexWarning(_message.Message):
    __slots__ = ("vertex", "level", "short", "detail", "url", "info", "ranges", "rule", "more_locations")
    VERTEX_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SHORT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    MORE_LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    vertex: str
    level: int
    short: bytes
    detail: _containers.RepeatedScalarFieldContainer[bytes]
    url: str
    info: _ops_pb2.SourceInfo
    ranges: _containers.RepeatedCompositeFieldContainer[_ops_pb2.Range]
    rule: str
    more_locations: _containers.RepeatedCompositeFieldContainer[SourceLocation]
    def __init__(self, vertex: _Optional[str] = ..., level: _Optional[int] = ..., short: _Optional[bytes] = ..., detail: _Optional[_Iterable[bytes]] = ..., url: _Optional[str] = ..., info: _Optional[_Union[_ops_pb2.SourceInfo, _Mapping]] = ..., ranges: _Optional[_Iterable[_Union[_ops_pb2.Range, _Mapping]]] = ..., rule: _Optional[str] = ..., more_locations: _Optional[_Iterable[_Union[SourceLocation, _Mapping]]] = ...) -> None: ...

class SourceLocation(_message.Message):
    __slots__ = ("info", "ranges")
    INFO_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    info: _ops_pb2.SourceInfo
    ranges: _containers.RepeatedCompositeFieldContainer[_ops_pb2.Range]
    def __init__(self, info: _Optional[_Union[_ops_pb2.SourceInfo, _Mapping]] = ..., ranges: _Optional[_Iterable[_Union[_ops_pb2.Range, _Mapping]]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("record_json", "sources")
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    record_json: str
    sources: _containers.RepeatedCompositeFieldContainer[SourceExcerpt]
    def __init__(self, record_json: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[SourceExcerpt, _Mapping]]] = ...) -> None: ...

class SourceExcerpt(_message.Message):
    __slots__ = ("filename", "first_line", "data")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    filename: str
    first_line: int
    data: bytes
    def __init__(self, filename: _Optional[str] = ..., first_line: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class DiskUsageRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filter: _Optional[_Iterable[str]] = ...) -> None: ...

class DiskUsageResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: _containers.RepeatedCompositeFieldContainer[UsageRecord]
    def __init__(self, record: _Optional[_Iterable[_Union[UsageRecord, _Mapping]]] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("id", "mutable", "in_use", "size", "created_at", "last_used_at", "usage_count", "description", "record_type", "shared", "parents")
    ID_FIELD_NUMBER: _ClassVar[int]
    MUTABLE_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    USAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RECORD_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    mutable: bool
    in_use: bool
    size: int
    created_at: _timestamp_pb2.Timestamp
    last_used_at: _timestamp_pb2.Timestamp
    usage_count: int
    description: str
    record_type: str
    shared: bool
    parents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., mutable: _Optional[bool] = ..., in_use: _Optional[bool] = ..., size: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage_count: _Optional[int] = ..., description: _Optional[str] = ..., record_type: _Optional[str] = ..., shared: _Optional[bool] = ..., parents: _Optional[_Iterable[str]] = ...) -> None: ...

class PruneRequest(_message.Message):
    __slots__ = ("filter", "all", "keep_duration", "reserved_space", "max_used_space", "min_free_space")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    KEEP_DURATION_FIELD_NUMBER: _ClassVar[int]
    RESERVED_SPACE_FIELD_NUMBER: _ClassVar[int]
    MAX_USED_SPACE_FIELD_NUMBER: _ClassVar[int]
    MIN_FREE_SPACE_FIELD_NUMBER: _ClassVar[int]
    filter: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    keep_duration: int
    reserved_space: int
    max_used_space: int
    min_free_space: int
    def __init__(self, filter: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., keep_duration: _Optional[int] = ..., reserved_space: _Optional[int] = ..., max_used_space: _Optional[int] = ..., min_free_space: _Optional[int] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filter: _Optional[_Iterable[str]] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: _containers.RepeatedCompositeFieldContainer[WorkerRecord]
    def __init__(self, record: _Optional[_Iterable[_Union[WorkerRecord, _Mapping]]] = ...) -> None: ...

class WorkerRecord(_message.Message):
    __slots__ = ("id", "labels", "platforms", "gc_policy", "version", "cdi_devices")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    GC_POLICY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CDI_DEVICES_FIELD_NUMBER: _ClassVar[int]
    id: str
    labels: _containers.ScalarMap[str, str]
    platforms: _containers.RepeatedCompositeFieldContainer[_ops_pb2.Platform]
    gc_policy: _containers.RepeatedCompositeFieldContainer[GCPolicy]
    version: Version
    cdi_devices: _containers.RepeatedCompositeFieldContainer[CDIDevice]
    def __init__(self, id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., platforms: _Optional[_Iterable[_Union[_ops_pb2.Platform, _Mapping]]] = ..., gc_policy: _Optional[_Iterable[_Union[GCPolicy, _Mapping]]] = ..., version: _Optional[_Union[Version, _Mapping]] = ..., cdi_devices: _Optional[_Iterable[_Union[CDIDevice, _Mapping]]] = ...) -> None: ...

class CDIDevice(_message.Message):
    __slots__ = ("name", "auto_allow", "annotations", "on_demand")
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    AUTO_ALLOW_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    ON_DEMAND_FIELD_NUMBER: _ClassVar[int]
    name: str
    auto_allow: bool
    annotations: _containers.ScalarMap[str, str]
    on_demand: bool
    def __init__(self, name: _Optional[str] = ..., auto_allow: _Optional[bool] = ..., annotations: _Optional[_Mapping[str, str]] = ..., on_demand: _Optional[bool] = ...) -> None: ...

class GCPolicy(_message.Message):
    __slots__ = ("all", "keep_duration", "reserved_space", "filters", "max_used_space", "min_free_space")
    ALL_FIELD_NUMBER: _ClassVar[int]
    KEEP_DURATION_FIELD_NUMBER: _ClassVar[int]
    RESERVED_SPACE_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    MAX_USED_SPACE_FIELD_NUMBER: _ClassVar[int]
    MIN_FREE_SPACE_FIELD_NUMBER: _ClassVar[int]
    all: bool
    keep_duration: int
    reserved_space: int
    filters: _containers.RepeatedScalarFieldContainer[str]
    max_used_space: int
    min_free_space: int
    def __init__(self, all: _Optional[bool] = ..., keep_duration: _Optional[int] = ..., reserved_space: _Optional[int] = ..., filters: _Optional[_Iterable[str]] = ..., max_used_space: _Optional[int] = ..., min_free_space: _Optional[int] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("package", "version", "revision")
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    package: str
    version: str
    revision: str
    def __init__(self, package: _Optional[str] = ..., version: _Optional[str] = ..., revision: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("version", "state_token")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    version: Version
    state_token: str
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ..., state_token: _Optional[str] = ...) -> None: ...
