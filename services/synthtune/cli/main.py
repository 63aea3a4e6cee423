"""synthtune: records -> synthetic instruction data -> fine-tuned open LLM -> report."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from synthtune import __version__
from synthtune.cli.progress import StageBars, stderr
from synthtune.cli.storecmds import download_report, models_app, upload
from synthtune.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    Cancelled,
    InvalidInput,
    NotFound,
    SynthtuneError,
)
from synthtune.spec.graph import BY_KIND, RUNNER_KINDS, STEPS, kind_of, method_of

if TYPE_CHECKING:
    from synthtune.controller import RunRecord

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Turn your plant's records into a fine-tuned, measurably better open LLM.")
runs_app = typer.Typer(no_args_is_help=True, help="List, show, watch or cancel runs on a controller.")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
app.command()(upload)

StoreOpt = Annotated[str | None, typer.Option("--store", help="Artifact store: a path, file:///abs/path or s3://bucket/prefix (default ./synthtune-store).")]
PipelineArg = Annotated[Path, typer.Argument(help="The pipeline YAML file.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"synthtune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """synthtune command line."""


def _store(uri: str | None) -> Any:
    from synthtune.store import open_store

    return open_store(uri)


def _result_line(run_id: str, uri: str) -> None:
    typer.echo(f"run_id={run_id} uri={uri}")


def _run_pipeline(pipeline: Path, store_uri: str | None, until: str | None, resume: str | None, quiet: bool = False) -> RunRecord:
    """Validate, create or resume a run, execute it in process with a bar per stage."""
    from synthtune.controller import Executor, RunBook
    from synthtune.spec import load_spec

    spec = load_spec(pipeline)
    store = _store(store_uri)
    book = RunBook(store)
    if resume:
        record = book.load(resume)
        book.reopen(record)
    else:
        record = book.create(spec, pipeline.read_text(encoding="utf-8"), until)
    stderr.print(f"[bold]run[/bold] {record.run_id} · store {store.uri}")
    executor = Executor(store, book)
    with StageBars(quiet) as bars:
        try:
            record = executor.execute(record.run_id, bars)
        except KeyboardInterrupt:
            executor.interrupted(record.run_id)
            stderr.print(f"interrupted: continue with --resume {record.run_id}")
            raise
    if record.status != "succeeded":
        failed = [f"{name}: {info.message}" for name, info in record.stages.items() if info.state == "failed"]
        message = record.error or "; ".join(failed) or record.status
        error = {"cancelled": Cancelled, "invalid_input": InvalidInput, "not_found": NotFound}.get(record.error_kind or "", SynthtuneError)
        raise error(message)
    return record


def _last_uri(record: RunRecord, store_uri: str | None, step: str | None = None) -> str:
    store = _store(store_uri)
    if step is None and record.report:
        return f"{store.uri}/{record.report}"
    refs = [info.artifact["uri"] for name, info in record.stages.items()
            if info.artifact and (step is None or kind_of(name) == step)]
    return refs[-1] if refs else store.uri


@app.command()
def validate(pipeline: PipelineArg) -> None:
    """Check a pipeline file; list every problem with its line and column."""
    from synthtune.spec import load_spec

    spec = load_spec(pipeline)
    typer.echo(f"{pipeline}: valid (pipeline {spec.name!r}, methods: {', '.join(spec.method_keys())})")


@app.command()
def run(
    pipeline: PipelineArg,
    store: StoreOpt = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage: prepare, generate, train or evaluate.")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run id; finished stages are not redone.")] = None,
) -> None:
    """Run the whole pipeline (prepare -> generate -> train -> evaluate -> report) in this process."""
    if until is not None and until not in STEPS:
        raise InvalidInput(f"--until {until!r}: choose one of {', '.join(STEPS)}")
    record = _run_pipeline(pipeline, store, until, resume)
    uri = _last_uri(record, store)
    if record.report:
        stderr.print(f"[green]report:[/green] {uri}")
    _result_line(record.run_id, uri)


def _stage_command(stage: str) -> Any:
    def command(
        pipeline: PipelineArg,
        store: StoreOpt = None,
        run_id: Annotated[str | None, typer.Option("--run", help="Continue this run id instead of starting a new one.")] = None,
    ) -> None:
        record = _run_pipeline(pipeline, store, stage, run_id)
        _result_line(record.run_id, _last_uri(record, store, stage))

    command.__doc__ = {
        "generate": "Generate synthetic instruction data with every method (runs prepare first if needed).",
        "train": "Fine-tune one adapter per method (runs the earlier stages it needs, reusing cached results).",
        "evaluate": "Evaluate base vs tuned models and write the report (runs the earlier stages it needs).",
    }[stage]
    return command


@app.command()
def prepare(
    pipeline: Annotated[Path | None, typer.Argument(help="The pipeline YAML file (not needed with --suggest-fields).")] = None,
    store: StoreOpt = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Continue this run id instead of starting a new one.")] = None,
    suggest_fields: Annotated[Path | None, typer.Option("--suggest-fields", help="Propose a source.fields mapping for this records file and exit.")] = None,
) -> None:
    """Read, clean, deduplicate, redact and split the records."""
    if suggest_fields is not None:
        from synthtune.dataprep import suggest_fields_yaml

        typer.echo(suggest_fields_yaml(suggest_fields).rstrip())
        return
    if pipeline is None:
        raise InvalidInput("synthtune prepare needs a PIPELINE file (or --suggest-fields RECORDS_FILE)")
    record = _run_pipeline(pipeline, store, "prepare", run_id)
    _result_line(record.run_id, _last_uri(record, store, "prepare"))


for _stage in STEPS[1:]:
    app.command(name=_stage)(_stage_command(_stage))


@app.command()
def report(run_id: Annotated[str, typer.Argument(help="The run id.")], store: StoreOpt = None,
           out: Annotated[Path | None, typer.Option("--out", help="Download the run's report.html and report.json into this folder "
                                                                  "instead of rebuilding them in the store.")] = None) -> None:
    """Rebuild a run's report.json and report.html and print where the HTML is; with --out, download them."""
    if out is not None:
        html_path = download_report(store, run_id, out)
        stderr.print(f"[green]report:[/green] {html_path}")
        _result_line(run_id, str(html_path.resolve()))
        return
    from synthtune.controller import RunBook
    from synthtune.controller.jobs import adopt_job_results
    from synthtune.evaluator.report import write_report
    from synthtune.spec import load_spec_text

    st = _store(store)
    record = adopt_job_results(st, RunBook(st).load(run_id))  # stages run by `synthtune job` Jobs
    spec = load_spec_text(record.spec_yaml, f"run {run_id} spec", base_dir=record.base_dir)
    _, html_key = write_report(st, record.report_input(), spec)
    _result_line(run_id, f"{st.uri}/{html_key}")


@app.command()
def gc(store: StoreOpt = None,
       dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
       older_than_hours: Annotated[float, typer.Option(help="Local staging folders and S3 multipart uploads older than this are removed.")] = 24.0) -> None:
    """Remove what killed writers left: artifact files without a manifest, stale commit claims, /tmp/synthtune-* folders, incomplete S3 uploads."""
    from synthtune.store.gc import collect

    found = collect(_store(store), dry_run=dry_run, older_than_s=older_than_hours * 3600)
    verb = "would remove" if dry_run else "removed"
    for line in found.lines():
        typer.echo(f"{verb} {line}")
    typer.echo(f"gc: {verb} {len(found.lines())} item(s)")


@app.command()
def job(
    stage: Annotated[str, typer.Argument(help="prepare, generate, train or evaluate.")],
    pipeline: PipelineArg,
    store: Annotated[str, typer.Option("--store", help="Artifact store the Job reads and writes, e.g. s3://bucket/prefix.")],
    run: Annotated[str | None, typer.Option("--run", help="Run whose earlier stages this one reads (required after prepare).")] = None,
    config: Annotated[Path | None, typer.Option(help="Controller config YAML: its `kubernetes` section sets images, GPUs, "
                                                     "node selector, tolerations, env and Secrets.")] = None,
    image: Annotated[str | None, typer.Option(help="Container image (default: the config's, else ghcr.io/synthtune/...).")] = None,
    gpus: Annotated[int | None, typer.Option(min=0, help="GPUs of the Job (0: a CPU Job).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace of the Job.")] = None,
    node_selector: Annotated[list[str] | None, typer.Option(help="KEY=VALUE node label for GPU Jobs; repeatable.")] = None,
    secret: Annotated[list[str] | None, typer.Option(help="Secret whose keys become the Job's environment (S3 keys, API keys); "
                                                         "repeatable.")] = None,
) -> None:
    """Write a stage's request into the store and print its Job manifest(s) for `kubectl apply -f -`."""
    from ruamel.yaml import YAML

    from synthtune.controller.config import ControllerConfig, load_config
    from synthtune.controller.jobs import job_config, submit_stage_jobs
    from synthtune.spec import load_spec

    spec = load_spec(pipeline)
    st = _store(store)
    cfg = job_config((load_config(config) if config else ControllerConfig()).kubernetes, stage, st.uri, image, gpus,
                     namespace, node_selector or [], secret or [])
    record, manifests = submit_stage_jobs(spec, pipeline.read_text(encoding="utf-8"), st, stage, cfg, run)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    typer.echo(f"# synthtune run_id={record.run_id} store={st.uri}")
    for manifest in manifests:
        typer.echo("---")
        yaml.dump(manifest, sys.stdout)
    stderr.print(f"run {record.run_id}: {len(manifests)} Job(s) for {stage}; when they end: "
                 f"synthtune report {record.run_id} --store {st.uri} (or runs show through a controller)")


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="The run whose synthetic data to export.")],
    out: Annotated[Path, typer.Option("--out", help="File to write (OpenAI: JSONL; Alpaca: a JSON array).")],
    fmt: Annotated[str, typer.Option("--format", help="openai (chat fine-tuning JSONL) or alpaca.")] = "openai",
    method: Annotated[str | None, typer.Option(help="Method key to export (default: the only one the run has).")] = None,
    store: StoreOpt = None,
) -> None:
    """Export a run's synthetic data as OpenAI fine-tuning JSONL or Alpaca JSON."""
    from synthtune.controller import RunBook
    from synthtune.generator.export import export_artifact

    st = _store(store)
    record = RunBook(st).load(run_id)
    made = {method_of(name): info.artifact for name, info in record.stages.items() if kind_of(name) == "generate" and info.artifact}
    if not made:
        raise InvalidInput(f"run {run_id} has no synthetic data yet (run its generate stage first)")
    if method is None and len(made) > 1:
        raise InvalidInput(f"run {run_id} has several methods; choose one with --method ({', '.join(sorted(made))})")
    key = method or next(iter(made))
    if key not in made:
        raise InvalidInput(f"run {run_id} has no synthetic data for method {key!r} (has: {', '.join(sorted(made))})")
    count = export_artifact(st, made[key]["id"], fmt, out)
    stderr.print(f"exported {count} examples of {key} as {fmt}")
    _result_line(run_id, str(out.resolve()))


@app.command()
def demo(workdir: Annotated[Path, typer.Option(help="Folder for the demo's store.")] = Path("demo-work")) -> None:
    """Run the bundled quickstart example end to end on CPU and print where the report is."""
    example = _example_dir() / "pipeline.yaml"
    if not example.is_file():
        raise NotFound(f"the bundled example is missing ({example})")
    workdir.mkdir(parents=True, exist_ok=True)
    store_uri = str((workdir / "store").resolve())
    record = _run_pipeline(example, store_uri, None, None)
    uri = _last_uri(record, store_uri)
    path = uri.removeprefix("file://")
    stderr.print(f"\n[bold green]Done.[/bold green] Open the report: {path}")
    _result_line(record.run_id, uri)


def _example_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "examples" / "quickstart" / "pipeline.yaml").is_file():
            return parent / "examples" / "quickstart"
    return Path("examples/quickstart")


@app.command()
def init(path: Annotated[Path, typer.Argument(help="Where to write the pipeline file.")] = Path("pipeline.yaml"),
         data: Annotated[Path | None, typer.Option(help="A records file to propose the field mapping from.")] = None) -> None:
    """Write a commented pipeline.yaml to start from."""
    from synthtune.cli.template import pipeline_template

    if path.exists():
        raise InvalidInput(f"{path} exists; choose another path or remove it")
    fields: dict[str, str] = {}
    if data is not None:
        from synthtune.dataprep import suggest_fields

        fields = suggest_fields(data)
    path.write_text(pipeline_template(str(data or "work_orders.csv"), fields), encoding="utf-8")
    typer.echo(f"wrote {path}; edit it, then: synthtune validate {path}")


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="controller, dataprep, generator, trainer, evaluator or all.")],
    port: Annotated[int, typer.Option(help="gRPC port.")] = 50051,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    store: StoreOpt = None,
    insecure: Annotated[bool, typer.Option(help="Serve without a token (local development only).")] = False,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus metrics port.")] = None,
    tls_cert: Annotated[str | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[str | None, typer.Option(help="TLS private key (PEM).")] = None,
    tls_client_ca: Annotated[str | None, typer.Option(help="Mutual TLS: require client certificates signed by this CA (PEM).")] = None,
    health_port: Annotated[int | None, typer.Option(help="Also serve grpc.health.v1 alone in plaintext on this port "
                                                         "(Kubernetes gRPC probes cannot speak TLS).")] = None,
    config: Annotated[Path | None, typer.Option(help="Controller config YAML: runners, stage services, GPU Jobs, leader election "
                                                     "(default: $SYNTHTUNE_CONTROLLER_CONFIG, else every stage in process).")] = None,
    stage_workers: Annotated[int, typer.Option(min=1, help="Stage operations a stage service runs at once.")] = 2,
) -> None:
    """Serve gRPC services (SYNTHTUNE_AUTH_TOKEN required unless --insecure)."""
    from synthtune.controller.config import load_config
    from synthtune.controller.server import serve_forever
    from synthtune.rpc.server import ServerOptions

    known = ["controller", *(BY_KIND[k].service for k in RUNNER_KINDS)]
    names = known if service == "all" else [service]
    bad = [n for n in names if n not in known]
    if bad:
        raise InvalidInput(f"unknown service {bad[0]!r}: choose {', '.join(known)} or all")
    options = ServerOptions(port=port, host=host, insecure=insecure, metrics_port=metrics_port, tls_cert=tls_cert, tls_key=tls_key,
                            tls_client_ca=tls_client_ca, health_port=health_port)
    serve_forever(names, options, store, load_config(config), stage_workers)


ControllerOpt = Annotated[str, typer.Option("--controller", help="Controller address host:port.")]
TlsCaOpt = Annotated[str | None, typer.Option("--tls-ca", envvar="SYNTHTUNE_TLS_CA", show_envvar=True,
                                              help="CA (PEM) that signed the controller's certificate: talk TLS.")]
TlsCertOpt = Annotated[str | None, typer.Option("--tls-cert", envvar="SYNTHTUNE_TLS_CERT", show_envvar=True,
                                                help="Client certificate (PEM) for mutual TLS.")]
TlsKeyOpt = Annotated[str | None, typer.Option("--tls-key", envvar="SYNTHTUNE_TLS_KEY", show_envvar=True,
                                               help="Client key (PEM) for mutual TLS.")]


def _tls(ca: str | None, cert: str | None, key: str | None) -> Any:
    from synthtune.rpc.tls import ClientTLS

    return ClientTLS.resolve(ca, cert, key)


@app.command()
def submit(pipeline: PipelineArg, controller: ControllerOpt,
           until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
           tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None) -> None:
    """Submit a pipeline to a controller; prints the run id."""
    from synthtune.controller.remote import submit_run

    run = submit_run(controller, pipeline, until, _tls(tls_ca, tls_cert, tls_key))
    stderr.print(f"submitted run {run.run_id} to {controller}")
    _result_line(run.run_id, f"{run.store_uri}/runs/{run.run_id}/run.json")


@runs_app.command("list")
def runs_list(controller: ControllerOpt, tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None) -> None:
    """List runs, newest first."""
    from synthtune.controller.remote import list_runs

    for r in list_runs(controller, _tls(tls_ca, tls_cert, tls_key)):
        typer.echo(f"{r.run_id}\t{r.state}\t{r.name}")


@runs_app.command("show")
def runs_show(run_id: str, controller: ControllerOpt, tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None,
              tls_key: TlsKeyOpt = None) -> None:
    """Show a run's stages and artifacts."""
    from synthtune.controller.remote import show_run

    typer.echo(show_run(controller, run_id, _tls(tls_ca, tls_cert, tls_key)))


@runs_app.command("watch")
def runs_watch(run_id: str, controller: ControllerOpt, tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None,
               tls_key: TlsKeyOpt = None) -> None:
    """Stream a run's events until it ends."""
    from synthtune.controller.remote import watch_run

    state = watch_run(controller, run_id, lambda line: typer.echo(line), _tls(tls_ca, tls_cert, tls_key))
    if state != "succeeded":
        raise SynthtuneError(f"run {run_id} ended {state}")


@runs_app.command("cancel")
def runs_cancel(run_id: str, controller: ControllerOpt, tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None,
                tls_key: TlsKeyOpt = None) -> None:
    """Cancel a run (stops stage work and deletes its Jobs)."""
    from synthtune.controller.remote import cancel_run

    typer.echo(cancel_run(controller, run_id, _tls(tls_ca, tls_cert, tls_key)))


def main(argv: list[str] | None = None) -> int:
    """Entry point: every domain error is mapped to its exit code here, once."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our bars show the progress; no tqdm per model load
    try:
        result = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SynthtuneError as exc:  # each domain error carries its exit code: 2 bad input, 130 cancelled, 1 other
        prefix = "interrupted" if isinstance(exc, Cancelled) else "error"
        print(f"{prefix}: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors (missing argument, unknown option): exit 2, no traceback
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_BAD_INPUT))
    # Without standalone mode, typer returns the exit code of an interrupted command (130) instead of raising.
    return result if isinstance(result, int) else 0


def entry() -> None:
    """The `synthtune` command: main(), then an exit that an interrupted stage cannot hold up.

    After Ctrl-C the run record is already written (cancelled, resumable). A stage still busy in
    its daemon thread may hold a lock that interpreter shutdown needs (an import, a log handler),
    so an interrupted command leaves at once instead of finalising.
    """
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
