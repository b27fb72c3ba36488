"""`bearwatch user ...`: dashboard users, their roles and passwords.

Passwords are never command-line arguments (they would sit in the shell history and
in `ps`): they are prompted for, or read from standard input with --password-stdin.
They are hashed before the write transaction opens (Argon2 is slow; the lock is shared).

Commands import what they need inside them: the CLI's start-up rule (bearwatch.cli_common).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bearwatch.cli_common import open_database
from bearwatch.localtime import local_text, park_zone
from bearwatch.schema import Role

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from the first line of standard input (scripts)")
]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def register(app: typer.Typer) -> None:
    user_app = typer.Typer(help="Manage dashboard users (rangers, ops, admins).", no_args_is_help=True)
    app.add_typer(user_app, name="user")

    @user_app.command("add")
    def user_add(
        name: str,
        role: Annotated[Role, typer.Option("--role", help="ranger, ops or admin")],
        password_stdin: PasswordStdin = False,
    ) -> None:
        """Add a user who can log in to the dashboard."""
        from bearwatch.db import write_transaction
        from bearwatch.users import add_user, check_name, new_password

        check_name(name)
        password = new_password(_read_password(password_stdin))
        with open_database() as factory, write_transaction(factory) as session:
            user = add_user(session, name, role, password)
        typer.echo(f"user {user.name} added ({user.role.value})")

    @user_app.command("list")
    def user_list() -> None:
        """List users and their roles."""
        from bearwatch.users import list_users
        from shadow.sites import site_zones

        with open_database() as factory, factory() as session:
            users = list_users(session)
            zone_name = park_zone(site_zones(session).values())
        for user in users:
            login = "password" if user.has_password else "no password (single sign-on only)"
            state = "\tDISABLED" if user.disabled else ""
            typer.echo(f"{user.name}\t{user.role.value}\t{login}\tadded {local_text(user.created_at, zone_name)}{state}")
        if not users:
            typer.echo("no users yet; add one with `bearwatch user add NAME --role admin`")

    @user_app.command("set-role")
    def user_set_role(name: str, role: Annotated[Role, typer.Argument(help="ranger, ops or admin")]) -> None:
        """Change a user's role (takes effect on their next page load)."""
        from bearwatch.db import write_transaction
        from bearwatch.users import set_role

        with open_database() as factory, write_transaction(factory) as session:
            user = set_role(session, name, role)
        typer.echo(f"user {user.name} is now {user.role.value}")

    @user_app.command("passwd")
    def user_passwd(name: str, password_stdin: PasswordStdin = False) -> None:
        """Set a user's password."""
        from bearwatch.db import write_transaction
        from bearwatch.users import new_password, set_password

        password = new_password(_read_password(password_stdin))
        with open_database() as factory, write_transaction(factory) as session:
            set_password(session, name, password)
        typer.echo(f"password of {name} changed")

    @user_app.command("disable")
    def user_disable(name: str) -> None:
        """Stop a user from logging in or acting; their open dashboard sessions end. Their verdicts stay."""
        from bearwatch.db import write_transaction
        from bearwatch.schema import utcnow
        from bearwatch.users import disable_user

        with open_database() as factory, write_transaction(factory) as session:
            disable_user(session, name, utcnow())
        typer.echo(f"user {name} disabled; their open dashboard sessions end on their next page load")

    @user_app.command("enable")
    def user_enable(name: str) -> None:
        """Let a disabled user log in again."""
        from bearwatch.db import write_transaction
        from bearwatch.users import enable_user

        with open_database() as factory, write_transaction(factory) as session:
            enable_user(session, name)
        typer.echo(f"user {name} enabled")

    @user_app.command("remove")
    def user_remove(name: str) -> None:
        """Delete a user who has given no verdict (one who has can only be disabled)."""
        from bearwatch.db import write_transaction
        from bearwatch.users import remove_user

        with open_database() as factory, write_transaction(factory) as session:
            remove_user(session, name)
        typer.echo(f"user {name} removed")
