"""``evaluate.backend: vllm_server``: a vLLM OpenAI server of the base model answers for base and every
adapter; each adapter is loaded into it at run time, asked under its own name, and unloaded after.

Speaks the API of vLLM v0.12.0 (the chart's ``vllmTeacher.image``), started with ``--enable-lora``,
``--max-lora-rank`` at least the adapters' ``r`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``:

- ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}`` -> 200 with a text body
  (``Success: LoRA adapter '<name>' added successfully.``); a refusal is 400 (404 when there is no
  adapter at the path, 500 in later releases) with ``{"error": {"message", "type", "param", "code"}}``.
- ``POST /v1/unload_lora_adapter`` ``{"lora_name"}`` -> 200, or 404 when it is not loaded.
- ``GET /v1/models`` -> ``{"data": [{"id", "root", "parent", ...}]}``: the base model, then the adapters
  (``parent`` names their base).

``lora_path`` is a path on the server: the adapter is copied to ``evaluate.lora_dir`` (a volume both
pods mount) and named there as ``evaluate.server_lora_dir`` sees it. A ``method: full`` model is not an
adapter and cannot be loaded into a running server: it is refused here; evaluate it with the offline
engine (``backend: vllm``) instead.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput, PermanentError
from synthtune.evaluator.answers import Answers, Prompt, answer_api_key_env, answer_by_name, split_adapters
from synthtune.llm.backends import TeacherUnavailable
from synthtune.progress import Progress
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Artifact

log = logging.getLogger("synthtune.evaluator")
ATTEMPTS = 5  # a server that is down (connection refused, 502/503/504) is tried this often
BACKOFF_S = 1.0  # first wait between attempts; doubles, at most 30 s


class LoraServer:
    """The adapter-management calls of one vLLM server."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float = 120.0) -> None:
        from synthtune.llm.endpoints import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=timeout_s)
        self._httpx = httpx

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The response, after retrying a server that is down; TeacherUnavailable naming the URL when it stays down."""
        why = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._http.request(method, f"{self.url}{path}", json=body)
            except self._httpx.TransportError as exc:
                why = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in (502, 503, 504):
                    if response.status_code in (401, 403):
                        raise PermanentError(f"the vLLM server at {self.url} refused the API key (HTTP {response.status_code}); "
                                             "check the variable evaluate.api_key_env names")
                    return response
                why = f"HTTP {response.status_code}"
            if attempt < ATTEMPTS:
                time.sleep(min(BACKOFF_S * 2 ** (attempt - 1), 30.0))
        raise TeacherUnavailable(f"the vLLM server at {self.url} is unreachable after {ATTEMPTS} attempts ({why}); run again to resume")

    def models(self) -> list[dict[str, Any]]:
        response = self._call("GET", "/models")
        if response.status_code != 200:
            raise PermanentError(f"the vLLM server at {self.url}: GET /models answered HTTP {response.status_code}: {_message(response)}")
        return list(response.json().get("data") or [])

    def check_serves(self, base: str) -> None:
        """The server serves ``base`` (the name evaluate asks for base answers under)."""
        served = [m.get("id") for m in self.models() if not m.get("parent")]
        if base not in served:
            raise InvalidInput(f"the vLLM server at {self.url} serves {', '.join(map(str, served)) or 'no model'}, not {base!r}: "
                               "serve train.base_model there, or set evaluate.served_model to the name it serves it under")

    def load(self, name: str, path: str, adapter: Artifact, key: str) -> None:
        response = self._call("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if response.status_code == 200:
            return
        message = _message(response)
        if response.status_code == 400 and "already been loaded" in message:
            return  # an earlier attempt loaded this very adapter (the name carries its id)
        raise InvalidInput(f"the vLLM server at {self.url} refused adapter {adapter.id} (method {key}, lora_path {path}): "
                           f"HTTP {response.status_code}: {message}")

    def unload(self, name: str) -> None:
        """Unload; a failure is logged, never raised: the answers are already in."""
        try:
            response = self._call("POST", "/unload_lora_adapter", {"lora_name": name})
        except TeacherUnavailable as exc:
            log.warning("could not unload LoRA adapter %s: %s", name, exc)
            return
        if response.status_code not in (200, 404):
            log.warning("the vLLM server at %s did not unload %s: HTTP %s: %s", self.url, name, response.status_code, _message(response))


def _message(response: Any) -> str:
    """The error message of a vLLM error body ({"error": {"message"}}), else the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error or body)[:500]


def _stage(spec: PipelineSpec, adapter: Artifact, name: str) -> tuple[Path | None, str]:
    """(the copy to remove after, or None; the adapter's path as the server sees it)."""
    ev = spec.evaluate
    local = adapter.download()
    if not ev.lora_dir:
        return None, str(Path(local).resolve())
    target = Path(ev.lora_dir) / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(local, target)
    return target, str(Path(ev.server_lora_dir or ev.lora_dir) / name)


def generate_vllm_server(spec: PipelineSpec, adapters: dict[str, Artifact], prompts: list[Prompt], temperature: float,
                         samples: int, progress: Progress) -> Answers:
    """Base answers under the served base name, then per adapter: load it into every server, answer, unload it."""
    from synthtune.llm.endpoints import endpoint_urls

    ev = spec.evaluate
    loras, fulls = split_adapters(adapters)
    if fulls:
        keys = ", ".join(f"{k} ({a.id})" for k, a in fulls.items())
        raise InvalidInput(f"evaluate.backend vllm_server loads LoRA adapters into a running server, but {keys} holds a whole model "
                           "(train.method full): evaluate it with backend vllm (the offline engine, on a GPU) or transformers")
    from synthtune.llm.openai_backend import api_key as read_key
    from synthtune.spec.generate import ModelEndpointSpec

    # The operator's endpoint and key policy (SYNTHTUNE_ALLOWED_ENDPOINTS, ...) holds for every server URL.
    endpoint = ModelEndpointSpec(backend="openai", base_url=ev.base_url, base_urls=ev.base_urls, api_key_env=answer_api_key_env(spec))
    key = read_key(endpoint)
    api_key = key if endpoint.api_key_env else None
    base = ev.served_model or spec.train.base_model
    servers = [LoraServer(url, api_key) for url in endpoint_urls(ev.base_url, ev.base_urls)]
    try:
        for server in servers:
            server.check_serves(base)
        out = answer_by_name(spec, {"base": base}, prompts, temperature, samples, progress)
        for key, art in loras.items():
            name = f"synthtune-{key}-{art.id[-12:]}"
            copy, path = _stage(spec, art, name)
            loaded: list[LoraServer] = []
            try:
                for server in servers:
                    server.load(name, path, art, key)
                    loaded.append(server)
                progress.note(f"loaded adapter {key} ({art.id}) into {len(servers)} vLLM server(s) as {name}")
                out.update(answer_by_name(spec, {f"tuned:{key}": name}, prompts, temperature, samples, progress))
            finally:
                for server in loaded:
                    server.unload(name)
                if copy is not None:
                    shutil.rmtree(copy, ignore_errors=True)
        return out
    finally:
        for server in servers:
            server.close()
