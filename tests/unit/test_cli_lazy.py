"""The ``cobro`` group builds each command when it is used: the list ``--help`` shows is
made from each command's help alone and must say what the built command says."""

from __future__ import annotations

import pytest
import typer
from typer.core import TyperGroup
from typer.main import get_command

from cobro.cli.app import Commands, app

NAMES = list(Commands.lazy)


@pytest.fixture
def group() -> Commands:
    built = get_command(app)
    assert isinstance(built, Commands)
    return built


def test_the_group_lists_every_command_in_the_order_of_its_table(group: Commands) -> None:
    ctx = typer.Context(group)
    assert group.list_commands(ctx) == NAMES
    assert not group._lazy_commands.built  # listing names builds nothing


@pytest.mark.parametrize("name", NAMES)
def test_a_commands_summary_says_what_the_built_command_says(group: Commands, name: str) -> None:
    summary = group.summary(name)
    built = group.build(name)
    assert summary.name == built.name == name
    assert isinstance(summary, TyperGroup) == isinstance(built, TyperGroup)
    for attribute in ("help", "short_help", "hidden", "deprecated", "rich_help_panel"):
        assert getattr(summary, attribute) == getattr(built, attribute), attribute
    assert summary.get_short_help_str() == built.get_short_help_str()


def test_a_command_is_built_once_when_it_is_looked_up(group: Commands) -> None:
    ctx = typer.Context(group)
    contacts = group.get_command(ctx, "contacts")
    assert isinstance(contacts, TyperGroup)
    assert list(contacts.commands) == ["assign", "unassign", "list"]
    assert group.get_command(ctx, "contacts") is contacts
    assert set(group._lazy_commands.built) == {"contacts"}
    assert group.get_command(ctx, "contcts") is None


def test_a_command_registered_on_the_typer_itself_is_kept_after_the_table() -> None:
    extra = typer.Typer(cls=Commands, add_completion=False)

    @extra.callback()
    def main() -> None:
        """Top."""

    @extra.command()
    def hello() -> None:
        """Says hello."""

    group = get_command(extra)
    assert isinstance(group, Commands)
    ctx = typer.Context(group)
    assert group.list_commands(ctx) == [*NAMES, "hello"]
    built = group.get_command(ctx, "hello")
    assert built is not None and built.help == "Says hello."
