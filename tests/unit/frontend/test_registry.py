"""The registry of frontends by name."""

from __future__ import annotations

import pytest

from dockyard.core import NotFoundError, UsageError
from dockyard.frontend import (
    DOCKERFILE_FRONTEND,
    PYTHON_FRONTEND,
    DockerfileFrontend,
    Frontend,
    Frontends,
    PythonFrontend,
)


def test_lookup_by_name_and_unknown_names_listed() -> None:
    frontends = Frontends({PYTHON_FRONTEND: PythonFrontend()})
    frontends.register(DOCKERFILE_FRONTEND, DockerfileFrontend())
    assert frontends.names() == ("dockerfile.v0", "python")
    assert isinstance(frontends.get("python"), PythonFrontend)
    assert "dockerfile.v0" in frontends
    assert len(frontends) == 2
    with pytest.raises(
        NotFoundError, match=r"unknown frontend 'gateway.v0' .*dockerfile.v0, python"
    ):
        frontends.get("gateway.v0")


def test_names_are_registered_once_and_must_be_words() -> None:
    frontends = Frontends()
    frontends.register("python", PythonFrontend())
    with pytest.raises(UsageError, match="already registered"):
        frontends.register("python", PythonFrontend())
    with pytest.raises(UsageError, match="invalid frontend name"):
        frontends.register("two words", PythonFrontend())
    with pytest.raises(UsageError, match="invalid frontend name"):
        frontends.register("", PythonFrontend())


def test_builtin_frontends_satisfy_the_protocol() -> None:
    assert isinstance(PythonFrontend(), Frontend)
    assert isinstance(DockerfileFrontend(), Frontend)


async def test_lazy_frontend_is_made_once_on_first_use() -> None:
    from dockyard.frontend import LazyFrontend, PythonOptions

    from .fakes import FakeContext

    made: list[PythonFrontend] = []

    def factory() -> PythonFrontend:
        made.append(PythonFrontend())
        return made[-1]

    lazy = LazyFrontend(factory)
    frontends = Frontends({"python": lazy})
    assert made == []
    options = frontends.get("python").parse_options({"filename": "b.py", "build-arg:A": "1"})
    assert options == PythonOptions(path="b.py", build_args={"A": "1"})  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await lazy.solve(FakeContext(), PythonOptions(path="/nonexistent/build.py"))  # type: ignore[arg-type]
    assert len(made) == 1
    assert lazy.frontend is made[0]
