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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["buld", "."], "No such command 'buld'. Did you mean 'build'?"),
        (["sovle"], "No such command 'sovle'. Did you mean 'solve'?"),
        (["imag"], "No such command 'imag'. (Did you mean one of: 'image', 'images'?)"),
        (["debug", "dumpllb"], "No such command 'dumpllb'. Did you mean 'dump-llb'?"),
        (["image", "sav"], "No such command 'sav'. Did you mean 'save'?"),
        (["xyz"], "No such command 'xyz'.\n"),
    ],
)
def test_a_mistyped_command_gets_a_suggestion(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # click suggests among the commands it has loaded only: lazy ones got no suggestion
    from dockyard.cli.main import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err
