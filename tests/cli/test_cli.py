"""The synthtune command: contract commands, exit codes, last-line run id and URI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTRACT = ["validate", "run", "prepare", "generate", "train", "evaluate", "report", "demo", "serve", "submit", "runs", "init", "export", "export-model"]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=str(REPO / "services"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "synthtune.cli.main", *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)


def test_help_lists_every_contract_command():
    out = cli("--help")
    assert out.returncode == 0
    for name in CONTRACT:
        assert f"  {name}" in out.stdout, name
    runs = cli("runs", "--help")
    for sub in ("list", "show", "watch", "cancel"):
        assert sub in runs.stdout


def test_every_command_has_real_help():
    from synthtune.cli.main import app

    summaries = {c.name or c.callback.__name__.replace("_", "-"): (c.callback.__doc__ or "").strip().splitlines()[0] for c in app.registered_commands}
    summaries |= {g.name: g.typer_instance.info.help for g in app.registered_groups}
    for name in CONTRACT:
        out = cli(name, "--help")
        usage = next(line for line in out.stdout.splitlines() if "Usage:" in line)
        assert out.returncode == 0 and f" {name} " in usage, name
        assert summaries[name] and " ".join(summaries[name].split()) in " ".join(out.stdout.split()), name  # what the command does


def test_version():
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("synthtune ")


def test_validate_bad_spec_exits_2_naming_lines(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 3\nname: x\nsource:\n  paths: [a.csv]\n  feilds: {}\n")
    out = cli("validate", str(bad))
    assert out.returncode == 2
    assert f"{bad}:1:1: version" in out.stderr and f"{bad}:5:3: source.feilds: unknown key" in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_ok_and_missing_file(tmp_path):
    assert cli("validate", str(REPO / "examples" / "quickstart" / "pipeline.yaml")).returncode == 0
    out = cli("validate", str(tmp_path / "none.yaml"))
    assert out.returncode == 2 and "no such pipeline file" in out.stderr


def test_bad_store_uri_is_a_clear_error(tmp_path):
    out = cli("prepare", str(REPO / "examples" / "quickstart" / "pipeline.yaml"), "--store", "ftp://x/y")
    assert out.returncode == 2 and "unknown scheme" in out.stderr and "Traceback" not in out.stderr


def test_unreachable_s3_store_exits_1(tmp_path):
    out = cli("prepare", str(REPO / "examples" / "quickstart" / "pipeline.yaml"), "--store", "s3://bucket/x",
              env={"SYNTHTUNE_S3_ENDPOINT": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert out.returncode == 1 and "cannot reach" in out.stderr and "Traceback" not in out.stderr


def test_serve_refuses_without_token():
    env = {k: v for k, v in os.environ.items() if k != "SYNTHTUNE_AUTH_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "synthtune.cli.main", "serve", "dataprep", "--port", "0"],
                         capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO / "services")}, timeout=60)
    assert out.returncode == 2 and "refusing to start without a token" in out.stderr


def test_prepare_prints_run_id_and_uri_last(tmp_path):
    out = cli("prepare", str(REPO / "examples" / "quickstart" / "pipeline.yaml"), "--store", str(tmp_path / "store"),
              env={"SYNTHTUNE_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("run_id=packaging-line-quickstart-") and " uri=file://" in last and "/artifacts/prepared-" in last


def test_suggest_fields_and_init(tmp_path):
    out = cli("prepare", "--suggest-fields", str(REPO / "examples" / "quickstart" / "work_orders.csv"))
    assert out.returncode == 0 and "Title" in out.stdout and "fields:" in out.stdout, out.stderr
    target = tmp_path / "pipeline.yaml"
    out = cli("init", str(target), "--data", str(REPO / "examples" / "quickstart" / "work_orders.csv"))
    assert out.returncode == 0
    assert cli("validate", str(target)).returncode == 0
    assert cli("init", str(target)).returncode == 2  # refuses to overwrite


@pytest.mark.parametrize(("args", "says"), [
    (("validate",), "Error: Missing argument 'pipeline'."),
    (("bogus-command",), "Error: No such command 'bogus-command'."),
    (("runs", "list"), "Error: Missing option '--controller'."),
    (("run", "p.yaml", "--no-such-option"), "Error: No such option: --no-such-option"),
    (("prepare",), "error: synthtune prepare needs a PIPELINE file (or --suggest-fields RECORDS_FILE)"),
])
def test_usage_errors_exit_2_without_a_traceback(args, says):
    out = cli(*args)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and says in out.stderr


def _pipeline(tmp_path: Path, records: str, fields: str = "{problem: Title, solution: Fix}") -> Path:
    (tmp_path / "records.csv").write_bytes(records.encode("utf-8") if isinstance(records, str) else records)
    spec = tmp_path / "p.yaml"
    spec.write_text(f"version: 1\nname: bad\nsource:\n  paths: [records.csv]\n  fields: {fields}\n")
    return spec


@pytest.mark.parametrize("records, fields, message", [
    ("", "{problem: Title, solution: Fix}", "records.csv"),
    ("Title,Fix\nbelt slips,tension belt\n", "{problem: Title, solution: Action}", "Action"),
    ("\x00\x01\x02\xff\xfe" * 200, "{problem: Title, solution: Fix}", "records.csv"),
])
def test_bad_records_found_by_a_stage_exit_2_naming_the_file(tmp_path, records, fields, message):
    spec = _pipeline(tmp_path, records, fields)
    out = cli("prepare", str(spec), "--store", str(tmp_path / "store"), env={"SYNTHTUNE_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr


def test_ctrl_c_exits_130_and_the_run_can_be_resumed(tmp_path):
    import signal
    import time

    rows = "".join(f"pump {i} leaks at seal {i % 97},replace seal and check shaft {i}\n" for i in range(200_000))
    spec = _pipeline(tmp_path, "Title,Fix\n" + rows)
    env = dict(os.environ, PYTHONPATH=str(REPO / "services"), SYNTHTUNE_CACHE=str(tmp_path / "cache"))
    # A background job (CI under `cmd &`) inherits SIGINT ignored, and Python then keeps it so:
    # give the child the default disposition, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "synthtune.cli.main", "prepare", str(spec), "--store", str(tmp_path / "store")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "store" / "runs"
    deadline = time.time() + 60
    while time.time() < deadline and not (runs.is_dir() and any(runs.iterdir())):
        time.sleep(0.1)
    time.sleep(1.0)  # inside the prepare stage
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never leave it running past the test
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err
    import json

    (run_dir,) = list(runs.iterdir())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "cancelled" and record["stages"]["prepare"]["state"] == "cancelled"


def test_unknown_run_report_is_not_found(tmp_path):
    out = cli("report", "no-such-run", "--store", str(tmp_path / "s"))
    assert out.returncode == 2 and "no run 'no-such-run'" in out.stderr


@pytest.mark.slow
def test_end_to_end_tiny_pipeline_through_the_cli(tmp_path):
    """prepare -> generate -> train (Ray) -> evaluate -> report with the real embedded model, tiny sizes."""
    spec = tmp_path / "p.yaml"
    spec.write_text(f"""\
version: 1
name: tiny
source:
  paths: [{REPO / 'examples' / 'quickstart' / 'work_orders.csv'}]
  fields: {{problem: Title, machine: MachineType, cause: ConditionFound, solution: WorkPerformed, hours: Hours}}
generate:
  teacher: {{backend: transformers, max_tokens: 96, concurrency: 4}}
  methods: [{{name: record_qa}}]
  limit: 3
  filters: {{min_chars: 1, decontaminate: false, dedup_near: false, keep_truncated: true}}
train: {{method: lora, max_steps: 2, batch_size: 2, max_seq_len: 160, warmup_steps: 0, learning_rate: 0.001}}
evaluate: {{metrics: [rouge, bleu], limit: 2, max_new_tokens: 12, forgetting_probe: false, bootstrap: 50}}
""")
    out = cli("run", str(spec), "--store", str(tmp_path / "store"), env={"SYNTHTUNE_CACHE": str(tmp_path / "cache")}, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.endswith("/report.html")
    run_id = last.split()[0].split("=", 1)[1]
    import json

    report = json.loads((tmp_path / "store" / "runs" / run_id / "report.json").read_text())
    assert report["status"] == "succeeded"
    assert set(report["metrics"]) == {"base", "tuned:record_qa"}
    for name in report["metrics"]:
        for key in ("rouge1", "rouge2", "rougeL", "bleu"):
            assert 0.0 <= report["metrics"][name][key] <= 1.0
    assert report["models"][1] == {"name": "tuned:record_qa", "base_model": "smollm2-135m-instruct", "method": "record_qa",
                                   "adapter": report["models"][1]["adapter"]}
    assert report["training"]["record_qa"]["train_loss"]
    html = (tmp_path / "store" / "runs" / run_id / "report.html").read_text()
    assert f"{report['metrics']['base']['rougeL']:.4f}" in html


def test_export_writes_a_runs_synthetic_data(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    from synthtune.controller import RunBook
    from synthtune.spec import load_spec_text
    from synthtune.store import open_store

    store = open_store(str(tmp_path / "store"))
    example = {"id": "w:1#v0", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Belt slips?"},
                                            {"role": "assistant", "content": "1. Tension the belt."}], "provenance": {}}
    with store.create("synthetic", [], {"t": 1}, "test") as w:
        w.write_jsonl("data.jsonl", [example])
        ref = w.commit()
    text = "version: 1\nname: ex\nsource: {paths: [a.csv]}\ngenerate: {methods: [{name: record_qa}, {name: persona}]}\n"
    book = RunBook(store)
    record = book.create(load_spec_text(text), text, "generate")
    record.stages["generate:record_qa"].state, record.stages["generate:record_qa"].artifact = "succeeded", ref.to_dict()
    book.save(record)
    out = tmp_path / "alpaca.json"
    res = cli("export", record.run_id, "--store", str(tmp_path / "store"), "--format", "alpaca", "--out", str(out),
              env={"SYNTHTUNE_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text()) == [{"instruction": "Belt slips?", "input": "", "output": "1. Tension the belt.", "system": "s"}]
    assert res.stdout.strip().splitlines()[-1] == f"run_id={record.run_id} uri={out.resolve()}"
    missing = cli("export", record.run_id, "--store", str(tmp_path / "store"), "--method", "persona", "--out", str(out),
                  env={"SYNTHTUNE_CACHE": str(tmp_path / "cache")})
    assert missing.returncode == 2 and "no synthetic data for method 'persona'" in missing.stderr
    other = cli("export", record.run_id, "--store", str(tmp_path / "no-store"), "--format", "csv", "--out", str(out))
    assert other.returncode == 2 and "'csv' is not one of 'openai', 'alpaca'" in " ".join(other.stderr.replace("│", " ").split()), other.stderr
    assert not (tmp_path / "no-store").exists(), "the format is refused before the store is opened"
