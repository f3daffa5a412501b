"""Commands built when they are used: ``cobro X`` imports and builds only X.

Typer turns every registered command and group into a click command, inspecting each
function's signature, before it reads the command line: for a command line that runs
one command, that was most of the start-up. A :class:`LazyGroup` knows its commands by
where they are defined (``"module:attribute"``, a function or a ``typer.Typer``) and has
Typer build each one, as ``add_typer``/``command`` would, the first time it is looked
up. Its ``--help`` lists every command from its help text alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, MutableMapping
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command, solve_typer_info_defaults

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter


class _Commands(MutableMapping[str, "Command"]):
    """A group's commands by name, in the order of its table, each built on first use."""

    def __init__(self, group: LazyGroup) -> None:
        self.group = group
        self.built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self.built:
            if name not in self.group.lazy:
                raise KeyError(name)
            self.built[name] = self.group.build(name)
        return self.built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self.built[name] = command

    def __delitem__(self, name: str) -> None:
        del self.built[name]

    def __iter__(self) -> Iterator[str]:
        yield from self.group.lazy
        yield from (name for name in self.built if name not in self.group.lazy)

    def __len__(self) -> int:
        return len(set(self.group.lazy) | set(self.built))


class LazyGroup(TyperGroup):
    """A Typer group whose commands are listed in ``lazy`` (name -> "module:attribute")
    and built when a command line or a help page needs them. Commands registered on the
    Typer itself (``@app.command()``) are built by Typer as usual and listed after them."""

    lazy: ClassVar[dict[str, str]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        registered = self.commands  # those registered on the Typer itself, built already
        self.commands = self._lazy_commands = _Commands(self)
        self.commands.update(registered)
        self._listing = False

    def _holder(self, name: str) -> typer.Typer:
        """A Typer holding only command ``name``, registered as the group's own Typer
        would register it (``add_typer`` for a Typer, ``command`` for a function)."""
        module, _, attribute = self.lazy[name].partition(":")
        target = getattr(import_module(module), attribute)
        holder = typer.Typer(add_completion=False, rich_markup_mode=self.rich_markup_mode)
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name)
        else:
            holder.command(name=name)(target)
        return holder

    def build(self, name: str) -> Command:
        """Command ``name`` as Typer builds it inside its group."""
        holder = self._holder(name)
        command = get_command(holder)
        if holder.registered_groups:
            assert isinstance(command, TyperGroup)
            return command.commands[name]
        return command

    def summary(self, name: str) -> Command:
        """What a help page lists of command ``name``: its name, help and flags, without
        its parameters (which are what costs to build)."""
        holder = self._holder(name)
        if holder.registered_groups:
            info = solve_typer_info_defaults(holder.registered_groups[0])
            return TyperGroup(
                name=name,
                help=info.help,
                short_help=info.short_help,
                hidden=info.hidden,
                deprecated=info.deprecated,
                rich_markup_mode=self.rich_markup_mode,
                rich_help_panel=info.rich_help_panel,
            )
        command = holder.registered_commands[0]
        return TyperCommand(
            name=name,
            help=(
                inspect.getdoc(command.callback)
                if command.help is None
                else inspect.cleandoc(command.help)
            ),
            short_help=command.short_help,
            hidden=command.hidden,
            deprecated=command.deprecated,
            rich_markup_mode=self.rich_markup_mode,
            rich_help_panel=command.rich_help_panel,
        )

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if self._listing and cmd_name in self.lazy and cmd_name not in self._lazy_commands.built:
            return self.summary(cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
