"""Command-line options derived from a config dataclass: its fields, types, defaults and docs.

Every ``cola-gym`` option that sets a config field (``TrainConfig``, ``CoLAConfig``,
``MCTSConfig``, ``Suite``, ``MicroShape``) is made here from the dataclass, so a new field is
an option at once, with the help text of its docstring entry and the field's own default::

    add_config_arguments(parser, MCTSConfig, aliases={"--num-simulations": ("--simulations",)})
    config = MCTSConfig(**config_values(parser.parse_args(argv), MCTSConfig))
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any

_ATTRIBUTE = re.compile(r"^\s+(\w+): (.*)$")


def field_docs(config_class: type) -> dict[str, str]:
    """The ``Attributes:`` entries of a dataclass docstring, by field name (continuations joined)."""
    docs: dict[str, str] = {}
    doc = config_class.__doc__ or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    current = None
    for line in section.splitlines():
        match = _ATTRIBUTE.match(line)
        if match and len(line) - len(line.lstrip()) <= 8:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.strip():
            docs[current] += " " + line.strip()
    return docs


def option_name(field_name: str) -> str:
    """The option of a field: ``--num-simulations`` for ``num_simulations``."""
    return "--" + field_name.replace("_", "-")


def add_config_arguments(
    parser: argparse._ActionsContainer,
    config_class: type,
    aliases: Mapping[str, Sequence[str]] | None = None,
    *,
    fields: Collection[str] | None = None,
    skip: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
    notes: Mapping[str, str] | None = None,
) -> None:
    """Adds ``--field-name`` for fields of ``config_class``; absent options keep the field default.

    Args:
        parser: the parser (or argument group) to extend.
        config_class: a dataclass.
        aliases: more option strings of an option, by its generated option string.
        fields: the fields to add (default: every field).
        skip: fields left out (set by the command from another option).
        defaults: the command's own default of a field, where it differs from the
            dataclass's: used when the option is absent, and shown in the help.
        notes: a sentence added to a field's help (how the command treats it).
    """
    aliases, defaults, notes = aliases or {}, defaults or {}, notes or {}
    hints = typing.get_type_hints(config_class)
    docs = field_docs(config_class)
    chosen = [
        f for f in dataclasses.fields(config_class) if (fields is None or f.name in fields) and f.name not in skip
    ]
    unknown = set(fields or ()) | set(skip) | set(defaults) | set(notes)
    unknown -= {f.name for f in dataclasses.fields(config_class)}
    if unknown:
        raise ValueError(f"{config_class.__name__} has no fields {sorted(unknown)}")
    for field in chosen:
        flag = option_name(field.name)
        kind = hints[field.name]
        has_default = field.name in defaults or field.default is not dataclasses.MISSING
        default = defaults.get(field.name, field.default)
        text = docs.get(field.name, "")
        if has_default:
            text += f" (default: {_shown(default)})"
        if field.name in notes:
            text += " " + notes[field.name]
        kwargs: dict[str, Any] = {"dest": field.name, "help": text.replace("``", "").replace("%", "%%")}
        if field.name in defaults:
            kwargs["default"] = default
        elif has_default:
            kwargs["default"] = argparse.SUPPRESS
        else:
            kwargs["required"] = True
        if kind is bool:
            parser.add_argument(flag, *aliases.get(flag, ()), action="store_true", **kwargs)
            negative = "--no-" + flag[2:]
            parser.add_argument(negative, *aliases.get(negative, ()), action="store_false", dest=field.name,
                                default=argparse.SUPPRESS, help=f"the opposite of {flag}")  # fmt: skip
            continue
        parser.add_argument(flag, *aliases.get(flag, ()), **kwargs, **_value_arguments(kind))


def config_values(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields of ``config_class`` that ``args`` sets (options given, or given a command default).

    Repeated values (``nargs``) come back as tuples, as tuple fields hold them.
    """
    values = {}
    for field in dataclasses.fields(config_class):
        if hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return values


def _value_arguments(kind: Any) -> dict[str, Any]:
    """``choices`` for a ``Literal``, ``nargs`` for ``tuple[X, ...]``, else the scalar ``type``."""
    if typing.get_origin(kind) is typing.Literal:
        return {"choices": typing.get_args(kind)}
    if typing.get_origin(kind) is tuple:
        return {"nargs": "+", "type": typing.get_args(kind)[0]}
    return {"type": _scalar(kind)}


def _scalar(kind: Any) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind


def _shown(default: Any) -> str:
    """A default as it is typed on the command line (``0 1 2`` for a tuple)."""
    if isinstance(default, tuple):
        return " ".join(str(value) for value in default)
    return str(default)
