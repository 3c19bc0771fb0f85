"""A command group whose command modules are imported only when their command runs or shows its help.

``bmbench --help`` lists every command from a table of names and one-line helps, and ``bmbench score``
imports ``score_cmd`` alone, so neither pays for the other commands' modules and Typer conversions
(issue 14: ``--help`` under 0.3 s; ``score`` as a whole process within 1.5x of a ``read_csv``). A command
is converted exactly as ``app.command(name)(func)`` / ``app.add_typer(sub_app, name=name)`` would, so its
own ``--help``, options and errors are unchanged; tests/test_cli_startup.py checks the table against the
loaded commands.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
import typer.core
import typer.main


@dataclass(frozen=True)
class LazyCommand:
    """One entry of the command table: ``target`` is ``module:function`` (a command) or ``module:app``
    (a Typer sub-app, a group); ``help`` is what the parent's ``--help`` shows (the first paragraph of the
    command's own help)."""

    name: str
    target: str
    help: str

    def target_object(self) -> Any:
        """The command's function or Typer sub-app (its module imported now)."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def load(self) -> Any:
        """Import the module and convert the command as the eager registration would."""
        obj = self.target_object()
        holder = typer.Typer()
        if isinstance(obj, typer.Typer):
            holder.add_typer(obj, name=self.name)
        else:
            holder.command(self.name)(obj)
        return typer.main.get_group(holder).commands[self.name]

    def stub(self) -> typer.core.TyperCommand:
        """A stand-in that carries only the name and help, for listing the command without importing it."""
        return typer.core.TyperCommand(self.name, help=self.help)


class LazyCommands(MutableMapping[str, Any]):
    """``TyperGroup.commands`` that knows its names up front and loads a command on first access."""

    def __init__(self, table: tuple[LazyCommand, ...], added: dict[str, Any] | None = None) -> None:
        self.table = {entry.name: entry for entry in table}
        self.loaded: dict[str, Any] = dict(added or {})

    def __getitem__(self, name: str) -> Any:
        if name not in self.loaded:
            if name not in self.table:
                raise KeyError(name)
            self.loaded[name] = self.table[name].load()
        return self.loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self.table.pop(name, None)
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from self.table
        yield from (name for name in self.loaded if name not in self.table)

    def __len__(self) -> int:
        return len(set(self.table) | set(self.loaded))


class LazyGroup(typer.core.TyperGroup):
    """A ``TyperGroup`` over :class:`LazyCommands`; subclasses set :attr:`table`."""

    table: tuple[LazyCommand, ...] = ()
    listing_stubs = True
    """While listing (the group's own help, shell completion of command names), stand-ins replace the commands
    not yet loaded; tests switch this off to compare with the loaded commands."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.table, dict(self.commands))
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        """The names in table order (the ``TyperGroup`` default reads every command, which would load it)."""
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command (imported now if need be); a stand-in while listing."""
        commands = self.commands
        if (self._listing and self.listing_stubs and isinstance(commands, LazyCommands)
                and cmd_name in commands.table and cmd_name not in commands.loaded):
            return commands.table[cmd_name].stub()
        return commands.get(cmd_name)

    @contextmanager
    def _stubs(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The group's help, listing the commands without importing them."""
        with self._stubs():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """Complete command names (with their help) without importing every command."""
        with self._stubs():
            return super().shell_complete(ctx, incomplete)
