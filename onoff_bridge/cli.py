"""The `onoff-bridge` command: the local stack, schema registration, the services."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from onoff_bridge.localstack import LocalStack, StackError, StackSettings
from schemas.settings import BridgeSettings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="The local Kafka and registry (no Docker).")
schemas_app = typer.Typer(no_args_is_help=True, help="The Avro schemas in the registry.")
app.add_typer(stack_app, name="stack")
topics_app = typer.Typer(no_args_is_help=True, help="The Kafka topics of the design.")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
deadletter_app = typer.Typer(
    no_args_is_help=True, help="The quarantined deliveries in onoff.deadletter (docs/support.md)."
)
inspect_app = typer.Typer(no_args_is_help=True, help="Look one record up across the topics.")
app.add_typer(deadletter_app, name="deadletter")
app.add_typer(inspect_app, name="inspect")


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _fail(exc: Exception | str) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


_SECURE = typer.Option(
    "--secure",
    help="The 3-broker SASL_SSL cluster and the registry with basic auth (var/secure/).",
)


@stack_app.command("up")
def stack_up(secure: Annotated[bool, _SECURE] = False) -> None:
    """Fetch (first time) and start Kafka and the registry; write var/stack.env."""
    if secure:
        from onoff_bridge.localstack.secure import SecureStack, SecureStackSettings

        secure_settings = SecureStackSettings()
        try:
            found, _ = SecureStack(secure_settings, _say).up()
        except StackError as exc:
            raise _fail(exc) from exc
        typer.echo(f"kafka     {found.kafka_bootstrap_servers} (SASL_SSL, SCRAM-SHA-512)")
        typer.echo(f"registry  {found.schema_registry_url} (basic auth)")
        typer.echo(f"env       source {secure_settings.home / 'stack.env'}  (holds the passwords)")
        return
    settings = StackSettings()
    try:
        endpoints, _ = LocalStack(settings, _say).up()
    except StackError as exc:
        raise _fail(exc) from exc
    typer.echo(f"kafka     {endpoints.kafka_bootstrap_servers}")
    typer.echo(f"registry  {endpoints.schema_registry_url}")
    typer.echo(f"env       source {settings.env_file}")


@stack_app.command("down")
def stack_down(secure: Annotated[bool, _SECURE] = False) -> None:
    """Stop every process `stack up` started."""
    if secure:
        from onoff_bridge.localstack.secure import SecureStack, SecureStackSettings

        stopped = SecureStack(SecureStackSettings(), _say).down()
    else:
        stopped = LocalStack(StackSettings(), _say).down()
    typer.echo("stopped " + ", ".join(stopped) if stopped else "nothing was running")


@stack_app.command("status")
def stack_status(secure: Annotated[bool, _SECURE] = False) -> None:
    """Show each service, its pid and whether it answers."""
    if secure:
        from onoff_bridge.localstack.secure import SecureStack, SecureStackSettings

        for name, pid in SecureStack(SecureStackSettings(), _say).status():
            typer.echo(f"{name:15} {f'running (pid {pid})' if pid else 'stopped'}")
        return
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
        ids = register_all(registry_client(settings.registry_connection()), settings.topics)
    except RegistryUnavailableError as exc:
        raise _fail(exc) from exc
    for subject, schema_id in ids.items():
        typer.echo(f"{subject}  id {schema_id}")


@schemas_app.command("check")
def schemas_check(
    history: Annotated[
        bool,
        typer.Option(
            "--history/--registry",
            help="Replay each schema's released versions on a fresh subject, or check the "
            "schemas in use against what the registry's subjects hold now.",
        ),
    ] = False,
) -> None:
    """Check that the schemas evolve BACKWARD compatibly; exit 1 on a breaking change."""
    from schemas import registry_client
    from schemas.catalog import subjects_for
    from schemas.evolution import check_against_registry, check_history, unrecorded_changes

    settings = BridgeSettings()
    client = registry_client(settings.schema_registry_url)
    unrecorded = unrecorded_changes()
    for name in unrecorded:
        typer.echo(f"{name}: changed without a new file in schemas/avro/history/{name}/")
    verdicts = (
        check_history(client)
        if history
        else check_against_registry(client, subjects_for(settings.topics))
    )
    for verdict in verdicts:
        state = "ok" if verdict.compatible else "BREAKING"
        typer.echo(f"{verdict.name} {verdict.version}: {state} {verdict.detail}".rstrip())
    if unrecorded or not all(verdict.compatible for verdict in verdicts):
        raise typer.Exit(code=1)


@schemas_app.command("asyncapi")
def schemas_asyncapi(
    output: Annotated[str, typer.Option(help="Where to write it; '-' for stdout.")] = (
        "schemas/asyncapi.yaml"
    ),
) -> None:
    """Write the AsyncAPI 3 document of the topics, generated from the code."""
    from pathlib import Path

    from onoff_bridge.asyncapi import render

    text = render()
    if output == "-":
        typer.echo(text, nl=False)
        return
    Path(output).write_text(text)
    _say(f"wrote {output}")


@app.command("ingress")
def ingress(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
) -> None:
    """Serve the webhook ingress (settings from ONOFF_BRIDGE_* variables)."""
    from pydantic import ValidationError

    from ingress.bootstrap import check_connections
    from ingress.server import serve
    from ingress.settings import IngressSettings
    from schemas import SchemaError

    overrides = {"host": host, "port": port, "workers": workers}
    try:
        settings = IngressSettings().model_copy(
            update={k: v for k, v in overrides.items() if v is not None}
        )
    except ValidationError as exc:
        raise _fail(_first_message(exc)) from exc
    try:
        check_connections(settings)
    except SchemaError as exc:
        raise _fail(f"ingress refuses to start: {exc}") from exc
    where = f"http://{settings.host}:{settings.port}"
    _say(f"ingress listening on {where} ({settings.workers} worker(s))")
    serve(settings)


@app.command("worker")
def worker(
    name: Annotated[
        str, typer.Argument(help="A processor's name, or all: one child process for each.")
    ],
    web_port: Annotated[int | None, typer.Option(help="Port of /healthz and /metrics.")] = None,
) -> None:
    """Run stream processors (settings from ONOFF_BRIDGE_* variables)."""
    from pydantic import ValidationError

    from onoff_bridge.logs import logging_config
    from onoff_bridge.workers import run_each
    from processors.app import PROCESSORS
    from processors.preflight import check_worker
    from processors.settings import ProcessorSettings
    from processors.worker import run_worker
    from schemas import SchemaError

    names = list(PROCESSORS) if name == "all" else [name]
    if not set(names) <= set(PROCESSORS):
        choices = ", ".join(PROCESSORS)
        raise _fail(f"unknown processor {name!r}; choose from {choices} or all")
    try:
        settings = ProcessorSettings()
    except ValidationError as exc:
        raise _fail(_first_message(exc)) from exc
    if web_port is not None:
        settings = settings.model_copy(update={"web_port": web_port})
    try:
        if len(names) > 1:
            # Checked once here, so a wrong password is one line, not a child per
            # processor failing and being restarted.
            for each in names:
                check_worker(settings, [each])
            raise typer.Exit(code=run_each(settings, names, _say))
        check_worker(settings, names)
    except SchemaError as exc:
        raise _fail(f"worker {name} refuses to start: {exc}") from exc
    where = f"http://{settings.web_host}:{settings.web_port}"
    _say(f"worker {name}: health and metrics on {where}/healthz, /metrics")
    run_worker(settings, names, logging_config(settings.log_level, settings.log_json))


@topics_app.command("apply")
def topics_apply(
    partitions: Annotated[
        int | None,
        typer.Option(help="Partitions of the keyed topics [ONOFF_BRIDGE_TOPIC_PARTITIONS]."),
    ] = None,
    replication_factor: Annotated[
        int | None,
        typer.Option(help="Replicas of each topic [ONOFF_BRIDGE_TOPIC_REPLICATION_FACTOR]."),
    ] = None,
    min_insync_replicas: Annotated[
        int | None,
        typer.Option(help="min.insync.replicas [ONOFF_BRIDGE_TOPIC_MIN_INSYNC_REPLICAS]."),
    ] = None,
) -> None:
    """Create or update every topic, Faust's own included; report drift it cannot fix.

    Idempotent. Exits 2 when a topic differs in a way it must not change (cleanup
    policy, partition count, replication factor).
    """
    from confluent_kafka import KafkaException
    from pydantic import ValidationError

    from onoff_bridge.topics import apply_topics
    from processors.settings import ProcessorSettings
    from processors.topology import all_topics
    from schemas import SchemaError
    from schemas.preflight import check_kafka

    overrides: dict[str, Any] = {
        "topic_partitions": partitions,
        "topic_replication_factor": replication_factor,
        "topic_min_insync_replicas": min_insync_replicas,
    }
    try:
        settings = ProcessorSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise _fail(_first_message(exc)) from exc
    config = settings.kafka_config()
    try:
        check_kafka(config, settings.connect_timeout_s)
        report = apply_topics(config, all_topics(settings))
    except (SchemaError, KafkaException) as exc:
        raise _fail(exc) from exc
    for name in report.created:
        typer.echo(f"created    {name}")
    for change in report.changed:
        typer.echo(f"changed    {change}")
    for line in report.drift:
        typer.secho(f"DRIFT      {line}", fg=typer.colors.YELLOW)
    if not (report.created or report.changed):
        typer.echo(f"no change ({len(report.unchanged) + len(report.drift)} topics checked)")
    if report.drift:
        raise typer.Exit(code=2)


# The name the Kubernetes manifests' init containers used before `apply`.
topics_app.command("create", help="Alias of `topics apply`.")(topics_apply)


def _first_message(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
    return str(exc)


@app.command("run")
def run(
    keep_stack: Annotated[
        bool, typer.Option(help="Leave Kafka and the registry running on exit.")
    ] = False,
    ingress_port: Annotated[int, typer.Option(help="Port of the ingress.")] = 8080,
    processors_port: Annotated[
        int, typer.Option(help="First of the three processors' web ports.")
    ] = 6066,
    simulator_audio_port: Annotated[
        int | None,
        typer.Option(
            help="Where `simulate` serves its audio; the recordings worker trusts this one "
            "loopback port. Default: the ingress port + 9."
        ),
    ] = None,
) -> None:
    """Start the local stack and every service in the foreground; Ctrl-C stops all."""
    from onoff_bridge.devrun import run_everything

    try:
        run_everything(
            StackSettings(),
            keep_stack=keep_stack,
            say=_say,
            ingress_port=ingress_port,
            processors_port=processors_port,
            simulator_audio_port=simulator_audio_port or ingress_port + 9,
        )
    except StackError as exc:
        raise _fail(exc) from exc


@app.command("simulate")
def simulate(
    seed: Annotated[
        int, typer.Option(help="Seed of the traffic: the same seed, the same run.")
    ] = 1,
    rate: Annotated[float, typer.Option(help="New calls and SMS per second.")] = 10.0,
    duration: Annotated[float, typer.Option(help="Seconds of new traffic.")] = 60.0,
    time_scale: Annotated[
        float, typer.Option(help="Compress Onoff's minutes: 60 makes 5 minutes 5 seconds.")
    ] = 1.0,
    ledger: Annotated[str, typer.Option(help="JSON-lines ledger to write.")] = (
        "var/simulation/ledger.jsonl"
    ),
    retry_delay: Annotated[float, typer.Option(help="Seconds between retries.")] = 0.5,
    timeout: Annotated[float, typer.Option(help="Seconds before a try counts as failed.")] = 10.0,
    linger: Annotated[
        float, typer.Option(help="Seconds to keep serving audio until every link was fetched.")
    ] = 60.0,
    expired_share: Annotated[float, typer.Option(help="Share of audio links expired.")] = 0.15,
    flaky_share: Annotated[float, typer.Option(help="Share of links failing once (503).")] = 0.15,
    heavy_user_calls: Annotated[
        int,
        typer.Option(help="How many of the planned calls one user makes, all on the run's day."),
    ] = 0,
    poison_calls: Annotated[
        bool, typer.Option(help="Add a call dated 9999-12-31 and one dated year 1.")
    ] = False,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at most.", min=1)] = 32,
    audio_failure_share: Annotated[
        float,
        typer.Option(help="Share of all audio requests that fail (500, 503, body cut off)."),
    ] = 0.0,
    audio_delay: Annotated[
        float, typer.Option(help="Seconds (at most) the audio server waits before each answer.")
    ] = 0.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Send realistic Onoff traffic to ONOFF_BRIDGE_INGRESS_URL and log it to a ledger."""
    from rich.progress import Progress

    from onoff_bridge.simulation import SimulationError
    from onoff_bridge.simulation.audio import AudioFaults
    from onoff_bridge.simulation.runner import RunOptions
    from onoff_bridge.simulation.runner import simulate as run_simulation
    from onoff_bridge.simulation.settings import SimulationSettings
    from onoff_bridge.simulation.traffic import TrafficOptions

    traffic = TrafficOptions(
        seed=seed,
        rate=rate,
        duration_s=duration,
        time_scale=time_scale,
        expired_share=expired_share,
        flaky_share=flaky_share,
        heavy_user_calls=heavy_user_calls,
        poison_calls=poison_calls,
    )
    from pathlib import Path

    faults = AudioFaults(audio_failure_share, audio_delay, seed)
    options = RunOptions(
        traffic, Path(ledger), retry_delay, timeout, linger, concurrency, audio_faults=faults
    )
    settings = SimulationSettings()
    _say(f"simulating seed {seed} against {settings.ingress_url}; ledger {ledger}")
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("deliveries", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            summary = run_simulation(options, settings, advance)
        except SimulationError as exc:
            raise _fail(exc) from exc
    typer.echo(
        f"sent {summary.sent}, delivered {summary.delivered}, gave up {summary.gave_up}, "
        f"retried {summary.retried}; audio links {summary.links}, "
        f"not fetched {summary.links_not_fetched}; audio answers "
        + (", ".join(f"{k} {v}" for k, v in summary.audio_answers.items()) or "none")
    )


@app.command("verify")
def verify(
    ledger: Annotated[str, typer.Option(help="The ledger `simulate` wrote.")] = (
        "var/simulation/ledger.jsonl"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the topics to agree.")] = 60.0,
    skip_calls: Annotated[bool, typer.Option(help="Skip the onoff.calls checks.")] = False,
    skip_recordings: Annotated[bool, typer.Option(help="Skip onoff.recordings.")] = False,
    skip_metrics: Annotated[bool, typer.Option(help="Skip onoff.user-call-metrics.")] = False,
) -> None:
    """Check every topic against a simulation's ledger; exit 1 on any mismatch."""
    from pathlib import Path

    from onoff_bridge.simulation import SimulationError
    from onoff_bridge.simulation.ledger import read_ledger
    from onoff_bridge.simulation.stored import StoredObjects
    from onoff_bridge.simulation.verify import Checks, run_verify
    from processors.settings import ProcessorSettings

    try:
        entries = read_ledger(Path(ledger))
    except SimulationError as exc:
        raise _fail(exc) from exc
    checks = Checks(calls=not skip_calls, recordings=not skip_recordings, metrics=not skip_metrics)
    try:
        store = StoredObjects(ProcessorSettings().recordings)
        report = run_verify(entries, BridgeSettings(), checks, timeout, say=_say, store=store)
    except SimulationError as exc:
        raise _fail(exc) from exc
    for note in report.notes:
        typer.echo(note)
    for problem in report.problems:
        typer.secho(f"MISMATCH {problem}", fg=typer.colors.RED)
    verdict = "verify: OK" if report.ok else f"verify: {len(report.problems)} mismatch(es)"
    typer.echo(verdict)
    if not report.ok:
        raise typer.Exit(code=1)


_SINCE = typer.Option(
    help="Only those received since: an age (30m, 36h, 7d) or an ISO-8601 date or date-time."
)
_PROGRESS = typer.Option(help="Show a progress bar on stderr while reading.")


def _tool_settings(model: type[BridgeSettings]) -> Any:
    from pydantic import ValidationError

    try:
        return model()
    except ValidationError as exc:
        raise _fail(_first_message(exc)) from exc


def _since(text: str | None) -> Any:
    from datetime import UTC, datetime

    from onoff_bridge.deadletters import parse_since

    if text is None:
        return None
    try:
        return parse_since(text, datetime.now(UTC))
    except ValueError as exc:
        raise _fail(exc) from exc


@deadletter_app.command("list")
def deadletter_list(
    since: Annotated[str | None, _SINCE] = None,
    limit: Annotated[int, typer.Option(help="Show the N most recent.")] = 50,
    progress: Annotated[bool, _PROGRESS] = True,
) -> None:
    """Time, source, path, size, request id, key name and reason of each dead letter.

    Reasons are shown with every value from the body cut out; the record keeps them.
    """
    from confluent_kafka import KafkaException

    from onoff_bridge.deadletters import describe, list_deadletters
    from onoff_bridge.partitions import TopicReadError, terminal_progress
    from schemas import SchemaError

    settings = _tool_settings(BridgeSettings)
    with terminal_progress(progress) as bar:
        try:
            shown, scan = list_deadletters(settings, _since(since), limit, bar)
        except (SchemaError, TopicReadError, KafkaException) as exc:
            raise _fail(exc) from exc
    for letter in shown:
        typer.echo(describe(letter))
    note = f" ({scan.unreadable} unreadable records skipped)" if scan.unreadable else ""
    typer.echo(f"{len(shown)} shown of {len(scan.letters)} dead letters{note}")


@deadletter_app.command("replay")
def deadletter_replay(
    since: Annotated[str | None, _SINCE] = None,
    request_id: Annotated[
        list[str] | None, typer.Option("--id", help="Only this request id (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Judge and report, write nothing.")] = False,
    progress: Annotated[bool, _PROGRESS] = True,
) -> None:
    """Re-submit dead letters through today's validation to their raw topics, once each.

    Exits 1 when a record that passed could not be written; still-failing ones are reported.
    """
    from confluent_kafka import KafkaException

    from onoff_bridge.deadletters import Verdict, replay_deadletters, summary
    from onoff_bridge.partitions import TopicReadError, terminal_progress
    from processors.settings import ProcessorSettings
    from schemas import SchemaError

    settings = _tool_settings(ProcessorSettings)
    ids = set(request_id) if request_id else None
    with terminal_progress(progress) as bar:
        try:
            outcomes, _ = replay_deadletters(settings, _since(since), ids, dry_run, bar)
        except (SchemaError, TopicReadError, KafkaException) as exc:
            raise _fail(exc) from exc
    for outcome in outcomes:
        typer.echo(outcome.line())
    for missing in sorted((ids or set()) - {o.letter.request_id for o in outcomes}):
        typer.echo(f"{'not found':16}  {missing}")
    typer.echo(summary(outcomes))
    if any(outcome.verdict is Verdict.NOT_WRITTEN for outcome in outcomes):
        raise typer.Exit(code=1)


@inspect_app.command("call")
def inspect_call(
    call_id: Annotated[str, typer.Argument(help="The call's id (Onoff's `id`).")],
    show_personal: Annotated[
        bool, typer.Option(help="Show names, numbers, e-mails, notes and user keys.")
    ] = False,
    progress: Annotated[bool, _PROGRESS] = True,
) -> None:
    """Every delivery, version, recording and metrics window of one call."""
    from confluent_kafka import KafkaException

    from onoff_bridge.inspection import inspect_call as read_report
    from onoff_bridge.inspection import render
    from onoff_bridge.partitions import TopicReadError, terminal_progress
    from schemas import SchemaError

    settings = _tool_settings(BridgeSettings)
    with terminal_progress(progress) as bar:
        try:
            report = read_report(settings, call_id, bar)
        except (SchemaError, TopicReadError, KafkaException) as exc:
            raise _fail(exc) from exc
    for line in render(report, settings.topics, show_personal):
        typer.echo(line)


def main() -> None:
    app()
