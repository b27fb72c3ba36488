"""The CLI reference, docs/cli.md, generated from the Typer app so that it cannot go stale.

    python -m bearwatch.cli_docs > docs/cli.md

walks the click command tree of `bearwatch.cli.app` (`typer.main.get_command`) and writes,
for every command and sub-command, what its `--help` says: the usage line, the help text,
the arguments and options with their help, defaults and bounds, and a group's commands.
The text is laid out here, line by line, and never wrapped to a terminal, so it is the same
on every machine; tests/bearwatch/test_cli_docs.py fails when docs/cli.md differs from it.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

REGENERATE = "python -m bearwatch.cli_docs > docs/cli.md"


class _Param(Protocol):
    """The part of a click parameter this module reads."""

    def get_help_record(self, ctx: Any) -> tuple[str, str] | None: ...


class _Command(Protocol):
    """The part of a click command this module reads (click's or Typer's vendored click)."""

    help: str | None
    hidden: bool

    @property
    def context_class(self) -> Callable[..., Any]: ...

    def get_params(self, ctx: Any) -> Sequence[_Param]: ...

    def collect_usage_pieces(self, ctx: Any) -> list[str]: ...


class _Group(_Command, Protocol):
    def list_commands(self, ctx: Any) -> list[str]: ...

    def get_command(self, ctx: Any, cmd_name: str) -> Any: ...


def _is_group(command: _Command) -> TypeGuard[_Group]:
    return callable(getattr(command, "list_commands", None)) and callable(getattr(command, "get_command", None))


@dataclass(frozen=True)
class CommandDoc:
    """One command as its `--help` describes it."""

    path: str  # "bearwatch camera add"
    usage: str  # "bearwatch camera add [OPTIONS] {site} {name} {source}"
    help: str  # the help text, dedented, paragraphs kept
    arguments: tuple[tuple[str, str], ...]  # (name and type, help with [default: ...; required])
    options: tuple[tuple[str, str], ...]
    commands: tuple[tuple[str, str], ...]  # a group's sub-commands: (name, first paragraph of help)

    @property
    def summary(self) -> str:
        """The help text's first paragraph, on one line."""
        return _first_paragraph(self.help)


def _help_text(command: _Command) -> str:
    text = command.help or ""
    return inspect.cleandoc(text.split("\f", 1)[0]).strip()  # click: text after \f is not help


def _first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n", 1)[0].split())


def collect_commands(command: _Command, name: str = "bearwatch", parent: Any = None) -> list[CommandDoc]:
    """`command` and every visible command below it, depth first, in `--help` order."""
    ctx = command.context_class(command, info_name=name, parent=parent)
    path = str(ctx.command_path)
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or getattr(param, "hidden", False):
            continue
        kind = getattr(param, "param_type_name", "option")
        (arguments if kind == "argument" else options).append((record[0], record[1]))
    children: list[tuple[str, _Command]] = []
    if _is_group(command):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not getattr(sub, "hidden", False):
                children.append((sub_name, sub))
    doc = CommandDoc(
        path=path,
        usage=" ".join([path, *command.collect_usage_pieces(ctx)]),
        help=_help_text(command),
        arguments=tuple(arguments),
        options=tuple(options),
        commands=tuple((sub_name, _first_paragraph(_help_text(sub))) for sub_name, sub in children),
    )
    docs = [doc]
    for sub_name, sub in children:
        docs.extend(collect_commands(sub, sub_name, ctx))
    return docs


def _rows(title: str, rows: Sequence[tuple[str, str]]) -> list[str]:
    if not rows:
        return []
    width = max(len(left) for left, _ in rows) + 2
    return ["", f"{title}:", *(f"  {left.ljust(width)}{right}".rstrip() for left, right in rows)]


def _help_block(doc: CommandDoc) -> list[str]:
    """The `--help` text of one command, without wrapping."""
    lines = [f"Usage: {doc.usage}"]
    if doc.help:
        lines += ["", *doc.help.splitlines()]
    lines += _rows("Arguments", doc.arguments)
    lines += _rows("Options", doc.options)
    lines += _rows("Commands", doc.commands)
    return lines


def _anchor(path: str) -> str:
    """GitHub's anchor for a heading `` `path` ``."""
    return re.sub(r"[^\w\- ]", "", path.lower()).replace(" ", "-")


def _markdown_text(text: str) -> str:
    """Plain text that Markdown shows as written."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def render_cli_reference(command: _Command | None = None) -> str:
    """docs/cli.md: the reference of `command` (default: the `bearwatch` app)."""
    if command is None:
        import typer

        from bearwatch.cli import app

        command = typer.main.get_command(app)
    docs = collect_commands(command)
    root = docs[0].path
    lines = [
        "# CLI reference",
        "",
        f"<!-- Generated by `{REGENERATE}`; do not edit by hand. -->",
        "",
        f"Every command and sub-command of `{root}`, as its `--help` prints it. This file is",
        "generated from the Typer app (`bearwatch.cli.app`) by `bearwatch/cli_docs.py`: do not",
        "edit it; change the help in the code and regenerate it with",
        "",
        "```bash",
        f".venv/bin/{REGENERATE}",
        "```",
        "",
        "`tests/bearwatch/test_cli_docs.py` fails while this file and the app differ. What the",
        "commands are for and how they fit together: [the README](../README.md) and",
        "[operations.md](operations.md).",
        "",
        "## Commands",
        "",
    ]
    for doc in docs[1:]:
        depth = doc.path.count(" ") - 1
        summary = f": {_markdown_text(doc.summary)}" if doc.summary else ""
        lines.append(f"{'  ' * depth}- [`{doc.path}`](#{_anchor(doc.path)}){summary}")
    for doc in docs:
        lines += ["", f"## `{doc.path}`", "", "```text", *_help_block(doc), "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.buffer.write(render_cli_reference().encode("utf-8"))


if __name__ == "__main__":
    main()
