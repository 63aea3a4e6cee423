"""Store put/get MB/s against the raw minio client, same S3 server (moto on loopback), same run.

put: ``ArtifactWriter.commit()`` (upload in parts with the sha256 in the same pass, then the
manifest) against ``Minio.fput_object``. get: ``Store.open(ref).local_path()`` (manifest,
streamed download, sha256 check, atomic rename) against ``Minio.fget_object``. The raw client
runs with its own defaults. Runs interleave, alternating which goes first, so drift on a shared machine hits both alike.
The S3 server (moto) runs in its own process, as a real S3 would: in this process it would take the
GIL from the client and the hasher alike (``--in-process`` puts it back, for comparison).

Run: PYTHONPATH=services python benchmarks/store_throughput.py [--mb 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(port: int, in_process: bool) -> Any:
    """moto's S3 server on loopback; returns something with stop()."""
    if in_process:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return server
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)

    class _Proc:
        def stop(self) -> None:
            proc.terminate()
            proc.wait(10)

    return _Proc()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=128, help="object size in MiB")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each; the median is reported")
    parser.add_argument("--in-process", action="store_true", help="run the moto server in this process (threads)")
    args = parser.parse_args()

    from minio import Minio

    from synthtune.store import open_store

    port = free_port()
    server = start_moto(port, args.in_process)
    work = Path(tempfile.mkdtemp(prefix="store-bench-"))
    os.environ.update(
        SYNTHTUNE_S3_ENDPOINT=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1", SYNTHTUNE_CACHE=str(work / "cache"),
    )
    try:
        client = Minio(f"127.0.0.1:{port}", access_key="bench", secret_key="bench", secure=False, region="us-east-1")
        client.make_bucket("bench")
        src = work / "src.bin"
        with open(src, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(2**20))
        store = open_store("s3://bench/synthtune")

        timings: dict[str, list[tuple[float, float]]] = {"raw put": [], "raw get": [], "our put": [], "our get": []}

        def timed(name: str, i: int, fn: Callable[[], object]) -> object:
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            if i:  # run 0 warms connections and caches and is not counted
                timings[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            return result

        def raw_round(i: int) -> None:
            timed("raw put", i, lambda: client.fput_object("bench", f"raw/{i}.bin", str(src)))
            timed("raw get", i, lambda: client.fget_object("bench", f"raw/{i}.bin", str(work / f"raw-{i}.bin")))
            (work / f"raw-{i}.bin").unlink()

        def store_round(i: int) -> None:
            with store.create("prepared", [], {"bench": i}, "bench") as w:
                os.link(src, w.path("data.bin"))
                ref = timed("our put", i, w.commit)
            timed("our get", i, lambda: store.open(ref).local_path("data.bin"))  # type: ignore[arg-type]
            shutil.rmtree(work / "cache", ignore_errors=True)

        for i in range(args.repeats + 1):
            # Alternate which goes first, so neither always follows the other's writes.
            for run in (store_round, raw_round) if i % 2 else (raw_round, store_round):
                run(i)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    def mbps(name: str, which: int = 0) -> float:
        return args.mb / statistics.median(t[which] for t in timings[name])

    where = "in this process" if args.in_process else "its own process"
    print(f"object size: {args.mb} MiB, median of {args.repeats} runs, S3: moto server on loopback ({where}), client: minio")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    for op in ("put", "get"):
        raw, ours = mbps(f"raw {op}"), mbps(f"our {op}")
        verdict = "ok" if ours / raw >= 0.8 else "BELOW TARGET"
        print(f"{op}  raw minio {raw:8.1f} MB/s   synthtune store {ours:8.1f} MB/s   ratio {ours / raw:.2f}x  {verdict}")
    for op in ("put", "get"):
        raw, ours = mbps(f"raw {op}", 1), mbps(f"our {op}", 1)
        print(f"{op}  per CPU-second (this process{', server included' if args.in_process else ''}): raw {raw:8.1f} MB   store {ours:8.1f} MB   ratio {ours / raw:.2f}x")
    print("target: ratio >= 0.80x for both (the store also hashes every byte and writes a manifest)")


if __name__ == "__main__":
    main()
