"""docs/cli.md is the CLI reference generated from the Typer app, and it is current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from bearwatch.cli import app
from bearwatch.cli_docs import REGENERATE, collect_commands, render_cli_reference

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
STALE = f"docs/cli.md is not what the CLI's --help says; regenerate it: .venv/bin/{REGENERATE}"


def _root() -> typer.core.TyperGroup:
    """A fresh click command tree of the app (changing it leaves the app untouched)."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    return root


def _walk(command: Any, path: str, parent: Any = None) -> list[tuple[str, str]]:
    """(command path, help) of every command, found here without bearwatch.cli_docs."""
    ctx = command.context_class(command, info_name=path.rsplit(" ", 1)[-1], parent=parent)
    found = [(path, command.help or "")]
    if isinstance(command, typer.core.TyperGroup):
        for name in command.list_commands(ctx):
            found += _walk(command.get_command(ctx, name), f"{path} {name}", ctx)
    return found


def _infer(root: typer.core.TyperGroup) -> Any:
    command = root.get_command(root.context_class(root, info_name="bearwatch"), "infer")
    assert command is not None
    return command


def test_docs_cli_md_is_the_rendered_reference() -> None:
    assert CLI_MD.read_text(encoding="utf-8") == render_cli_reference(), STALE


def test_every_command_of_the_app_is_documented() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    commands = _walk(_root(), "bearwatch")
    assert len(commands) > 40  # every command and group, not just the top level
    assert {"bearwatch user disable", "bearwatch frames retain", "bearwatch config validate"} <= {p for p, _ in commands}
    for path, help_text in commands:
        assert f"\n## `{path}`\n" in text, f"{path} is missing from docs/cli.md; {STALE}"
        section = text.split(f"\n## `{path}`\n", 1)[1].split("\n## ", 1)[0]
        assert f"Usage: {path} " in section, path
        assert " ".join(help_text.split()[:6]) in " ".join(section.split()), f"{path}: help text missing; {STALE}"
    assert [c.path for c in collect_commands(_root())] == [p for p, _ in commands]


def test_a_changed_help_changes_the_reference() -> None:
    """The comparison above catches an edited command help, option help or default."""
    before = render_cli_reference()
    root = _root()
    _infer(root).help = "Score frames."
    assert render_cli_reference(root) != before
    assert "Score frames." in render_cli_reference(root)

    root = _root()
    batch = next(p for p in _infer(root).params if p.name == "batch_size")
    batch.help = "how many"
    assert render_cli_reference(root) != before
    batch.help, batch.default = "frames per batch at most", 65
    assert render_cli_reference(root) != before
    assert render_cli_reference() == before


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    before = render_cli_reference()
    for columns in ("20", "400"):
        monkeypatch.setenv("COLUMNS", columns)
        monkeypatch.setenv("BEARWATCH_USER", "somebody")
        assert render_cli_reference() == before
