"""Plain invocations of a few commands (``bmbench score FILE --split S``) called without Typer's parser.

Typer coerces every option value through a pydantic ``TypeAdapter``, and importing pydantic for that costs
about 0.1 s, a tenth of the whole-process ``pandas.read_csv`` that ``bmbench score`` is measured against
(issue 14, docs/performance.md). For a command named in ``bmbench.cli.main.PLAIN``, an invocation made only
of its positional arguments, ``--long VALUE`` / ``--long=VALUE`` options with ``str`` or ``Path`` values and
flags (each at most once, no global options, no ``--help``) is parsed here *from the command's own Typer
signature* and the function is called as Typer would call it. Anything else, and so every usage error,
goes to Typer unchanged; tests/test_cli_startup.py checks that both parse the same.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from typer.models import ArgumentInfo, OptionInfo

_VALUE_TYPES: dict[Any, Callable[[str], Any]] = {str: str, Path: Path, str | None: str, Path | None: Path}
"""Annotations whose values are converted here (exactly as Typer converts a plain value)."""
_COSMETIC = {"default", "param_decls", "help", "metavar", "show_default", "hidden", "rich_help_panel",
             "show_choices", "show_envvar", "shell_complete", "autocompletion"}
"""Settings that change only help and completion; a parameter with any other non-default setting (a callback,
an envvar, ``exists=True`` ...) makes its command Typer's."""


def _only_cosmetic(info: ArgumentInfo | OptionInfo) -> bool:
    fresh = vars(typer.Argument() if isinstance(info, ArgumentInfo) else typer.Option())
    return all(value == fresh.get(key) for key, value in vars(info).items() if key not in _COSMETIC)


@dataclass
class _Signature:
    """What the plain parser accepts for one command function."""

    positional: list[str] = field(default_factory=list)
    converters: dict[str, Callable[[str], Any]] = field(default_factory=dict)
    options: dict[str, tuple[str, Callable[[str], Any] | None]] = field(default_factory=dict)
    """``--long`` -> (parameter, value converter; None for a flag)."""
    defaults: dict[str, Any] = field(default_factory=dict)


def _signature(func: Callable[..., Any]) -> _Signature | None:
    """The command's parameters, or None when one of them is of a kind only Typer handles."""
    hints = typing.get_type_hints(func)
    sig = _Signature()
    for name, param in inspect.signature(func).parameters.items():
        info, kind = param.default, hints.get(name)
        if not isinstance(info, ArgumentInfo | OptionInfo) or not _only_cosmetic(info):
            return None
        if isinstance(info, ArgumentInfo) and kind in _VALUE_TYPES and info.default is ...:
            sig.positional.append(name)
            sig.converters[name] = _VALUE_TYPES[kind]
            continue
        if isinstance(info, ArgumentInfo) or info.default is ... or not info.param_decls:
            return None
        convert = None if kind is bool else _VALUE_TYPES.get(kind)
        for decl in info.param_decls:
            if not decl.startswith("--") or "/" in decl or (convert is None and kind is not bool):
                return None
            sig.options[decl] = (name, convert)
        sig.defaults[name] = info.default
    return sig


def _plain_value(token: str, convert: Callable[[str], Any]) -> bool:
    """A value Typer would read the same way: not empty, not an option (``-`` alone means stdout), and for a
    path not an existing unreadable file (which Typer refuses with its own message)."""
    if token != "-" and (token == "" or token.startswith("-")):
        return False
    return convert is not Path or not os.path.exists(token) or os.access(token, os.R_OK)


def parse(func: Callable[..., Any], args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments Typer would pass ``func`` for ``args`` (the words after the command name), or
    None when the invocation is not plain."""
    sig = _signature(func)
    if sig is None:
        return None
    kwargs: dict[str, Any] = {}
    given: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("-") and token != "":
            given.append(token)  # checked with the positional's type below
            i += 1
            continue
        decl, eq, value = token.partition("=")
        if decl not in sig.options or decl == "--":
            return None
        name, convert = sig.options[decl]
        if name in kwargs:
            return None
        if convert is None:
            if eq:
                return None
            kwargs[name] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        if not _plain_value(value, convert):
            return None
        kwargs[name] = convert(value)
        i += 1
    if len(given) != len(sig.positional):
        return None
    for name, value in zip(sig.positional, given, strict=True):
        if not _plain_value(value, sig.converters[name]):
            return None
        kwargs[name] = sig.converters[name](value)
    return {**sig.defaults, **kwargs}


def plain_call(argv: list[str], commands: dict[str, Callable[[], Callable[..., Any]]]) -> Callable[[], int] | None:
    """For ``argv`` (after the program name) that plainly invokes one of ``commands`` (name -> loader of the
    function), a call that runs it and returns the exit status; None: let Typer handle ``argv``."""
    if not argv or argv[0] not in commands or any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        return None  # shell completion is Typer's
    func = commands[argv[0]]()
    kwargs = parse(func, argv[1:])
    if kwargs is None:
        return None

    def call() -> int:
        try:
            func(**kwargs)
        except typer.Exit as done:  # how bmbench.cli.common.user_errors reports an exit status
            return done.exit_code
        return 0

    return call
