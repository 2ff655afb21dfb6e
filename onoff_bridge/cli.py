"""The `onoff-bridge` command: the local stack, schema registration, the services."""

from __future__ import annotations

from typing import Annotated

import typer

from onoff_bridge.localstack import LocalStack, StackError, StackSettings
from onoff_bridge.settings import BridgeSettings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="The local Kafka and registry (no Docker).")
schemas_app = typer.Typer(no_args_is_help=True, help="The Avro schemas in the registry.")
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


@stack_app.command("up")
def stack_up() -> None:
    """Fetch (first time) and start Kafka and the registry; write var/stack.env."""
    settings = StackSettings()
    try:
        endpoints, _ = LocalStack(settings, _say).up()
    except StackError as exc:
        raise _fail(exc) from exc
    typer.echo(f"kafka     {endpoints.kafka_bootstrap_servers}")
    typer.echo(f"registry  {endpoints.schema_registry_url}")
    typer.echo(f"env       source {settings.env_file}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop every process `stack up` started."""
    stopped = LocalStack(StackSettings(), _say).down()
    typer.echo("stopped " + ", ".join(stopped) if stopped else "nothing was running")


@stack_app.command("status")
def stack_status() -> None:
    """Show each service, its pid and whether it answers."""
    for status in LocalStack(StackSettings(), _say).status():
        state = f"running (pid {status.pid})" if status.pid else "stopped"
        answers = "answers" if status.ready else "no answer"
        typer.echo(f"{status.name:9} {state:22} {status.endpoint}  [{answers}]")


@schemas_app.command("register")
def schemas_register() -> None:
    """Register every checked-in schema under its subject (BACKWARD compatibility)."""
    from schemas import RegistryUnavailableError, register_all, registry_client

    settings = BridgeSettings()
    try:
        ids = register_all(registry_client(settings.schema_registry_url), settings.topics)
    except RegistryUnavailableError as exc:
        raise _fail(exc) from exc
    for subject, schema_id in ids.items():
        typer.echo(f"{subject}  id {schema_id}")


@app.command("run")
def run(
    keep_stack: Annotated[
        bool, typer.Option(help="Leave Kafka and the registry running on exit.")
    ] = False,
) -> None:
    """Start the local stack and every service in the foreground; Ctrl-C stops all."""
    from onoff_bridge.devrun import run_everything

    try:
        run_everything(StackSettings(), keep_stack=keep_stack, say=_say)
    except StackError as exc:
        raise _fail(exc) from exc


def main() -> None:
    app()
