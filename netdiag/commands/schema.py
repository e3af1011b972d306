"""`netdiag schema`: print every table's declared columns as Markdown."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema_command() -> None:
        """Print the documented schema of every table netdiag writes."""
        from netdiag.schema import markdown

        typer.echo(markdown())
