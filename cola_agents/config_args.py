"""Command-line options derived from a config dataclass: its fields, types, defaults and docs.

The ``cola-gym train`` options are :class:`~cola_gym.training.TrainConfig`'s fields, so a new
field is an option at once, with the help text of its docstring entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
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


def add_config_arguments(
    parser: argparse.ArgumentParser, config_class: type, aliases: Mapping[str, Sequence[str]] | None = None
) -> None:
    """Adds ``--field-name`` for every field of ``config_class``; absent options keep the field default.

    Args:
        parser: the parser to extend.
        config_class: a dataclass.
        aliases: more option strings of an option, by its generated option string.
    """
    aliases = aliases or {}
    hints = typing.get_type_hints(config_class)
    docs = field_docs(config_class)
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        has_default = field.default is not dataclasses.MISSING
        text = docs.get(field.name, "").replace("%", "%%")
        if has_default:
            text += f" (default: {field.default})"
        kwargs: dict[str, Any] = {"dest": field.name, "help": text}
        if has_default:
            kwargs["default"] = argparse.SUPPRESS
        else:
            kwargs["required"] = True
        if kind is bool:
            parser.add_argument(flag, *aliases.get(flag, ()), action="store_true", **kwargs)
            negative = "--no-" + flag[2:]
            parser.add_argument(negative, *aliases.get(negative, ()), action="store_false", dest=field.name,
                                default=argparse.SUPPRESS, help=f"the opposite of {flag}")  # fmt: skip
            continue
        choices = _choices(kind)
        if choices is not None:
            kwargs["choices"] = choices
        else:
            kwargs["type"] = _scalar(kind)
        parser.add_argument(flag, *aliases.get(flag, ()), **kwargs)


def _choices(kind: Any) -> tuple[Any, ...] | None:
    return typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None


def _scalar(kind: Any) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind
