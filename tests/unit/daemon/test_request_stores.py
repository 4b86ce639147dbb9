"""The daemon takes ``type=local`` caches a client offers as content stores of its
session (``store=ID``) and refuses those naming a directory, which would be one of its
own host."""

from __future__ import annotations

import pytest

from dockyard.api._gen import control_pb2 as pb
from dockyard.core import Digest, NullReporter, UsageError
from dockyard.daemon._request import build_request
from dockyard.engine._plugins import frontends
from dockyard.remotecache import CacheMode, ClientCacheExport, ClientCacheImport

DIGEST = "sha256:" + "ab" * 32


def request(
    *, imports: dict[str, str] | None = None, exports: dict[str, str] | None = None
) -> pb.SolveRequest:
    return pb.SolveRequest(
        ref="r",
        frontend="dockerfile.v0",
        cache=pb.CacheOptions(
            imports=[pb.CacheOptionsEntry(type="local", attrs=imports)] if imports else [],
            exports=[pb.CacheOptionsEntry(type="local", attrs=exports)] if exports else [],
        ),
    )


def test_local_caches_in_the_clients_stores_are_taken() -> None:
    built = build_request(
        request(
            imports={"store": "cache-from-0", "digest": DIGEST},
            exports={"store": "cache-to-0", "mode": "max"},
        ),
        frontends=frontends(),
        reporter=NullReporter(),
    )
    assert built.cache_imports == (ClientCacheImport(store="cache-from-0", digest=Digest(DIGEST)),)
    assert built.cache_exports == (ClientCacheExport(store="cache-to-0", mode=CacheMode.MAX),)


@pytest.mark.parametrize(
    "message",
    [
        request(imports={"src": "/var/lib/dockyard"}),
        request(exports={"dest": "/etc"}),
        request(exports={"dest": "/etc", "store": "x"}),
    ],
)
def test_a_directory_of_the_daemons_host_is_refused(message: pb.SolveRequest) -> None:
    with pytest.raises(UsageError, match=r"daemon's host|not both"):
        build_request(message, frontends=frontends(), reporter=NullReporter())
