"""Store put/get MB/s against the raw minio client, same S3 server (moto on loopback), same run.

Run: PYTHONPATH=services python benchmarks/store_throughput.py [--mb 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=64, help="object size in MB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from minio import Minio
    from moto.server import ThreadedMotoServer

    from synthtune.store import open_store

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(SYNTHTUNE_S3_ENDPOINT=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    client = Minio(f"127.0.0.1:{port}", access_key="bench", secret_key="bench", secure=False)
    client.make_bucket("bench")
    work = Path(tempfile.mkdtemp(prefix="store-bench-"))
    os.environ["SYNTHTUNE_CACHE"] = str(work / "cache")
    src = work / "src.bin"
    with open(src, "wb") as f:
        for _ in range(args.mb):
            f.write(os.urandom(1024 * 1024))
    store = open_store("s3://bench/synthtune")

    raw_put, raw_get, our_put, our_get = [], [], [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        client.fput_object("bench", f"raw/{i}.bin", str(src), part_size=16 * 1024 * 1024)
        raw_put.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.fget_object("bench", f"raw/{i}.bin", str(work / f"raw-{i}.bin"))
        raw_get.append(time.perf_counter() - t)

        with store.create("prepared", [], {"bench": i}, "bench") as w:
            os.link(src, w.path("data.bin"))
            t = time.perf_counter()
            ref = w.commit()  # includes the sha256 of the file, as every real commit does
            our_put.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.open(ref).local_path("data.bin")  # includes the sha256 check on read
        our_get.append(time.perf_counter() - t)
    server.stop()

    def mbps(times: list[float]) -> float:
        return args.mb / statistics.median(times)

    print(f"object size: {args.mb} MB, repeats: {args.repeats}, S3: moto server on loopback")
    print(f"put  raw minio {mbps(raw_put):8.1f} MB/s   synthtune store {mbps(our_put):8.1f} MB/s   ratio {mbps(our_put) / mbps(raw_put):.2f}x")
    print(f"get  raw minio {mbps(raw_get):8.1f} MB/s   synthtune store {mbps(our_get):8.1f} MB/s   ratio {mbps(our_get) / mbps(raw_get):.2f}x")
    print("target: ratio >= 0.80x for both")


if __name__ == "__main__":
    main()
