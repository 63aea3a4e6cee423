"""The openai backend and the generate stage against `transformers serve` with SmolLM2, offline, on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from synthtune.llm.chat import ChatRequest, make_backend
from synthtune.spec.generate import ModelEndpointSpec

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def serve_folder(tmp_path: Path) -> Path:
    """The embedded model folder with `architectures` in its config (older caches lack it)."""
    from synthtune.llm.models import resolve_model

    source = Path(resolve_model("smollm2-135m-instruct"))
    folder = tmp_path / "smollm2"
    folder.mkdir()
    for item in source.iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((source / "config.json").read_text())
    config["architectures"] = config.get("architectures") or ["LlamaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def transformers_serve(tmp_path):  # type: ignore[no-untyped-def]
    cli = Path(sys.executable).with_name("transformers")
    if not cli.exists() or shutil.which("uvicorn", path=str(cli.parent)) is None:
        pytest.skip("transformers[serving] is not installed")
    from gen_port import free_port

    port, folder = free_port(), serve_folder(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), str(folder)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("transformers serve did not start")
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1", str(folder)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_openai_backend_against_transformers_serve(transformers_serve) -> None:  # type: ignore[no-untyped-def]
    base_url, model = transformers_serve
    backend = make_backend(ModelEndpointSpec(backend="openai", model=model, base_url=base_url, temperature=0,
                                             max_tokens=16, concurrency=2, timeout_s=120))
    try:
        results = backend.complete([
            ChatRequest(messages=[{"role": "user", "content": "What is 2 + 2? Answer with a number."}], key="math"),
            ChatRequest(messages=[{"role": "user", "content": "Name one part of an excavator."}], key="part"),
        ])
    finally:
        backend.close()
    assert all(r.ok and r.text.strip() for r in results), [r.error for r in results]
    assert "4" in results[0].text and results[0].completion_tokens > 0 and results[0].prompt_tokens > 0
