"""Teacher throughput at concurrency 32 vs one request at a time, and our CPU overhead per record.

Against a loopback OpenAI-compatible server (a separate process, so its CPU is not counted)
with a fixed 200 ms latency per request. Targets: >= 25x throughput, < 2 ms CPU per record.
Also measures the whole generate stage (record_qa: two requests per record, filters, shards).

    PYTHONPATH=services python benchmarks/generate_concurrency.py [--out benchmarks/results/generate_concurrency.txt]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))

from synthtune.llm.chat import ChatRequest, make_backend  # noqa: E402
from synthtune.spec.generate import ModelEndpointSpec  # noqa: E402

LATENCY = 0.2


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "llm" / "loopback_server.py"), "--latency", str(LATENCY)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def measure(base_url: str, concurrency: int, n: int) -> tuple[float, float]:
    """(requests per second, CPU seconds of this process per request)."""
    backend = make_backend(ModelEndpointSpec(backend="openai", model="bench", base_url=base_url, concurrency=concurrency,
                                             max_tokens=64))
    try:
        backend.complete([ChatRequest(messages=[{"role": "user", "content": "warm-up"}]) for _ in range(min(concurrency, 8))])
        requests = [ChatRequest(messages=[{"role": "user", "content": f"Why does pump {i} whine?"}], key=str(i)) for i in range(n)]
        wall, cpu = time.perf_counter(), time.process_time()
        results = backend.complete(requests)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        backend.close()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return n / wall, cpu / n


def measure_stage(base_url: str, n_records: int) -> tuple[float, float]:
    """(records per second, CPU seconds per record) of generator.run with record_qa at concurrency 32."""
    from synthtune.generator import run
    from synthtune.spec import PipelineSpec
    from synthtune.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SYNTHTUNE_CACHE"] = str(Path(tmp) / "cache")
        store = open_store(str(Path(tmp) / "store"))
        records = [{"id": f"wo.csv:{i}", "type": "record", "text": "",
                    "fields": {"problem": f"hydraulic pump {i} whines under load near station {i % 17}",
                               "machine": f"excavator {i % 9}", "solution": f"replace coupling {i} and bleed the circuit"}}
                   for i in range(n_records)]
        writer = store.create("prepared", [], {"bench": n_records}, producer="bench")
        writer.write_jsonl("train.jsonl", records)
        writer.write_jsonl("test.jsonl", [])
        prepared = writer.commit()
        spec = PipelineSpec.model_validate({"version": 1, "name": "bench", "source": {"paths": ["x"]}, "generate": {
            "teacher": {"backend": "openai", "model": "bench", "base_url": base_url, "concurrency": 32, "max_tokens": 64},
            "shard_size": 256, "filters": {"min_chars": 1}}})
        wall, cpu = time.perf_counter(), time.process_time()
        out = run(spec, {"prepared": prepared}, store)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert store.open(out).stats["input_records"] == n_records
    return n_records / wall, cpu / n_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "generate_concurrency.txt"))
    parser.add_argument("--sequential", type=int, default=15, help="requests sent one at a time")
    parser.add_argument("--concurrent", type=int, default=640, help="requests sent 32 at a time")
    parser.add_argument("--records", type=int, default=320, help="records through the whole stage")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    server, base_url = start_server()
    try:
        seq_rps, seq_cpu = measure(base_url, 1, args.sequential)
        par_rps, par_cpu = measure(base_url, 32, args.concurrent)
        stage_rps, stage_cpu = measure_stage(base_url, args.records)
    finally:
        server.terminate()
        server.wait(10)
    ratio = par_rps / seq_rps
    lines = [
        f"generate_concurrency: loopback OpenAI-compatible server, {LATENCY * 1000:.0f} ms fixed latency per request",
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"load average at start {load:.2f} (other work on the machine lowers the ratio)",
        f"sequential (concurrency 1):  {args.sequential} requests, {seq_rps:7.2f} requests/s, CPU {seq_cpu * 1000:.2f} ms/request",
        f"concurrency 32:              {args.concurrent} requests, {par_rps:7.2f} requests/s, CPU {par_cpu * 1000:.2f} ms/request",
        f"throughput ratio: {ratio:.1f}x (target >= 25x; ideal 32x) -> {'PASS' if ratio >= 25 else 'FAIL'}",
        f"backend CPU overhead per record: {par_cpu * 1000:.2f} ms (target < 2 ms) -> {'PASS' if par_cpu < 0.002 else 'FAIL'}",
        f"whole stage (record_qa, 2 requests/record, filters, shards), {args.records} records at concurrency 32: "
        f"{stage_rps:.1f} records/s, CPU {stage_cpu * 1000:.2f} ms/record",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
