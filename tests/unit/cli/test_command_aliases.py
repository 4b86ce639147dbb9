"""docker's short commands are the ``image`` group's own (one definition each)."""

from __future__ import annotations

import click
import pytest

from dockyard.cli.main import cli


@pytest.mark.parametrize(
    ("alias", "command"),
    [
        ("images", "ls"),
        ("rmi", "rm"),
        ("tag", "tag"),
        ("push", "push"),
        ("pull", "pull"),
        ("history", "history"),
    ],
)
def test_a_short_command_is_the_image_groups_own(alias: str, command: str) -> None:
    ctx = click.Context(cli)
    group = cli.get_command(ctx, "image")
    assert isinstance(group, click.Group)
    assert cli.get_command(ctx, alias) is group.get_command(ctx, command)
