from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientMessage(_message.Message):
    __slots__ = ("hello", "reply")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    reply: Reply
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., reply: _Optional[_Union[Reply, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("welcome", "request")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    request: Request
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., request: _Optional[_Union[Request, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("version", "session_id", "name", "shared_key", "directories", "ssh_ids", "exports", "secrets", "credentials", "content_stores", "shell")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARED_KEY_FIELD_NUMBER: _ClassVar[int]
    DIRECTORIES_FIELD_NUMBER: _ClassVar[int]
    SSH_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_STORES_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    version: int
    session_id: str
    name: str
    shared_key: str
    directories: _containers.RepeatedScalarFieldContainer[str]
    ssh_ids: _containers.RepeatedScalarFieldContainer[str]
    exports: _containers.RepeatedScalarFieldContainer[str]
    secrets: bool
    credentials: bool
    content_stores: _containers.RepeatedCompositeFieldContainer[ContentStore]
    shell: bool
    def __init__(self, version: _Optional[int] = ..., session_id: _Optional[str] = ..., name: _Optional[str] = ..., shared_key: _Optional[str] = ..., directories: _Optional[_Iterable[str]] = ..., ssh_ids: _Optional[_Iterable[str]] = ..., exports: _Optional[_Iterable[str]] = ..., secrets: _Optional[bool] = ..., credentials: _Optional[bool] = ..., content_stores: _Optional[_Iterable[_Union[ContentStore, _Mapping]]] = ..., shell: _Optional[bool] = ...) -> None: ...

class ContentStore(_message.Message):
    __slots__ = ("id", "writable")
    ID_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    writable: bool
    def __init__(self, id: _Optional[str] = ..., writable: _Optional[bool] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("call_id", "secret", "credentials", "sync", "export_directory", "export_stream", "ssh", "content_info", "content_read", "content_write", "content_commit", "shell")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    EXPORT_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    EXPORT_STREAM_FIELD_NUMBER: _ClassVar[int]
    SSH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_INFO_FIELD_NUMBER: _ClassVar[int]
    CONTENT_READ_FIELD_NUMBER: _ClassVar[int]
    CONTENT_WRITE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    secret: SecretRequest
    credentials: CredentialsRequest
    sync: SyncRequest
    export_directory: ExportDirectoryRequest
    export_stream: ExportStreamRequest
    ssh: SshRequest
    content_info: ContentInfoRequest
    content_read: ContentReadRequest
    content_write: ContentWriteRequest
    content_commit: ContentCommitRequest
    shell: ShellRequest
    def __init__(self, call_id: _Optional[str] = ..., secret: _Optional[_Union[SecretRequest, _Mapping]] = ..., credentials: _Optional[_Union[CredentialsRequest, _Mapping]] = ..., sync: _Optional[_Union[SyncRequest, _Mapping]] = ..., export_directory: _Optional[_Union[ExportDirectoryRequest, _Mapping]] = ..., export_stream: _Optional[_Union[ExportStreamRequest, _Mapping]] = ..., ssh: _Optional[_Union[SshRequest, _Mapping]] = ..., content_info: _Optional[_Union[ContentInfoRequest, _Mapping]] = ..., content_read: _Optional[_Union[ContentReadRequest, _Mapping]] = ..., content_write: _Optional[_Union[ContentWriteRequest, _Mapping]] = ..., content_commit: _Optional[_Union[ContentCommitRequest, _Mapping]] = ..., shell: _Optional[_Union[ShellRequest, _Mapping]] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("call_id", "error", "secret", "credentials", "content_info", "content_commit")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_INFO_FIELD_NUMBER: _ClassVar[int]
    CONTENT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    error: Error
    secret: SecretReply
    credentials: CredentialsReply
    content_info: ContentInfoReply
    content_commit: ContentCommitReply
    def __init__(self, call_id: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., secret: _Optional[_Union[SecretReply, _Mapping]] = ..., credentials: _Optional[_Union[CredentialsReply, _Mapping]] = ..., content_info: _Optional[_Union[ContentInfoReply, _Mapping]] = ..., content_commit: _Optional[_Union[ContentCommitReply, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("record_json",)
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    record_json: str
    def __init__(self, record_json: _Optional[str] = ...) -> None: ...

class SecretRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SecretReply(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class CredentialsRequest(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: str
    def __init__(self, host: _Optional[str] = ...) -> None: ...

class CredentialsReply(_message.Message):
    __slots__ = ("found", "username", "password", "identity_token", "registry_token")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    found: bool
    username: str
    password: str
    identity_token: str
    registry_token: str
    def __init__(self, found: _Optional[bool] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., identity_token: _Optional[str] = ..., registry_token: _Optional[str] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("name", "include_patterns", "exclude_patterns", "follow_paths")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_PATHS_FIELD_NUMBER: _ClassVar[int]
    name: str
    include_patterns: _containers.RepeatedScalarFieldContainer[str]
    exclude_patterns: _containers.RepeatedScalarFieldContainer[str]
    follow_paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., include_patterns: _Optional[_Iterable[str]] = ..., exclude_patterns: _Optional[_Iterable[str]] = ..., follow_paths: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportDirectoryRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class ExportStreamRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class SshRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ContentInfoRequest(_message.Message):
    __slots__ = ("store", "digest")
    STORE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    store: str
    digest: str
    def __init__(self, store: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class ContentInfoReply(_message.Message):
    __slots__ = ("found", "size")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    size: int
    def __init__(self, found: _Optional[bool] = ..., size: _Optional[int] = ...) -> None: ...

class ContentReadRequest(_message.Message):
    __slots__ = ("store", "digest", "size")
    STORE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    store: str
    digest: str
    size: int
    def __init__(self, store: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ContentWriteRequest(_message.Message):
    __slots__ = ("store", "digest", "size")
    STORE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    store: str
    digest: str
    size: int
    def __init__(self, store: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ContentCommitRequest(_message.Message):
    __slots__ = ("store", "media_type", "digest", "size")
    STORE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    store: str
    media_type: str
    digest: str
    size: int
    def __init__(self, store: _Optional[str] = ..., media_type: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ContentCommitReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShellRequest(_message.Message):
    __slots__ = ("line", "announces_start")
    LINE_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCES_START_FIELD_NUMBER: _ClassVar[int]
    line: str
    announces_start: bool
    def __init__(self, line: _Optional[str] = ..., announces_start: _Optional[bool] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("open", "stats", "want", "data", "credit", "bytes", "finish", "error", "shell_start", "resize", "output", "shell_end", "started")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    WANT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SHELL_START_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    SHELL_END_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    open: Open
    stats: StatBatch
    want: Want
    data: DataBatch
    credit: Credit
    bytes: Bytes
    finish: Finish
    error: Error
    shell_start: ShellStart
    resize: WindowSize
    output: Output
    shell_end: ShellEnd
    started: ShellStarted
    def __init__(self, open: _Optional[_Union[Open, _Mapping]] = ..., stats: _Optional[_Union[StatBatch, _Mapping]] = ..., want: _Optional[_Union[Want, _Mapping]] = ..., data: _Optional[_Union[DataBatch, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., bytes: _Optional[_Union[Bytes, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., shell_start: _Optional[_Union[ShellStart, _Mapping]] = ..., resize: _Optional[_Union[WindowSize, _Mapping]] = ..., output: _Optional[_Union[Output, _Mapping]] = ..., shell_end: _Optional[_Union[ShellEnd, _Mapping]] = ..., started: _Optional[_Union[ShellStarted, _Mapping]] = ...) -> None: ...

class Open(_message.Message):
    __slots__ = ("session_id", "call_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    call_id: str
    def __init__(self, session_id: _Optional[str] = ..., call_id: _Optional[str] = ...) -> None: ...

class StatBatch(_message.Message):
    __slots__ = ("entries", "done")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Stat]
    done: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[Stat, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class Stat(_message.Message):
    __slots__ = ("path", "mode", "uid", "gid", "size", "mtime_ns", "linkname", "devmajor", "devminor")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    LINKNAME_FIELD_NUMBER: _ClassVar[int]
    DEVMAJOR_FIELD_NUMBER: _ClassVar[int]
    DEVMINOR_FIELD_NUMBER: _ClassVar[int]
    path: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: bytes
    devmajor: int
    devminor: int
    def __init__(self, path: _Optional[bytes] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., size: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., linkname: _Optional[bytes] = ..., devmajor: _Optional[int] = ..., devminor: _Optional[int] = ...) -> None: ...

class Want(_message.Message):
    __slots__ = ("ids", "done")
    IDS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    done: bool
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., done: _Optional[bool] = ...) -> None: ...

class DataBatch(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[Chunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[Chunk, _Mapping]]] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("id", "data", "eof")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    id: int
    data: bytes
    eof: bool
    def __init__(self, id: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("bytes",)
    BYTES_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    def __init__(self, bytes: _Optional[int] = ...) -> None: ...

class Bytes(_message.Message):
    __slots__ = ("data", "eof")
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    eof: bool
    def __init__(self, data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class Finish(_message.Message):
    __slots__ = ("files", "bytes")
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    files: int
    bytes: int
    def __init__(self, files: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class ShellStart(_message.Message):
    __slots__ = ("tty", "size", "await_start")
    TTY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    AWAIT_START_FIELD_NUMBER: _ClassVar[int]
    tty: bool
    size: WindowSize
    await_start: bool
    def __init__(self, tty: _Optional[bool] = ..., size: _Optional[_Union[WindowSize, _Mapping]] = ..., await_start: _Optional[bool] = ...) -> None: ...

class ShellStarted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WindowSize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("fd", "data")
    FD_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    fd: int
    data: bytes
    def __init__(self, fd: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ShellEnd(_message.Message):
    __slots__ = ("ran", "status", "notice")
    RAN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    ran: bool
    status: int
    notice: str
    def __init__(self, ran: _Optional[bool] = ..., status: _Optional[int] = ..., notice: _Optional[str] = ...) -> None: ...
