"""A DOUBLE of vLLM's OpenAI server with runtime LoRA updating, on loopback, for tests (vLLM cannot run here).

It implements the endpoints `evaluate.backend: vllm_server` uses as vLLM v0.12.0 documents and implements
them (vllm/entrypoints/openai/serving_models.py, api_server.py), and really applies each adapter with
transformers + PEFT on the embedded SmolLM2-135M, so base and tuned answers differ as they would:

- ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}``: 200 ``Success: LoRA adapter '<name>' added
  successfully.``; 400 InvalidUserInput when a field is missing or the name is loaded already; 400
  BadRequestError with the loader's message when the adapter cannot be loaded (rank above
  ``--max-lora-rank``: ``LoRA rank R is greater than max_lora_rank M.``; weights that do not fit the base);
  404 NotFoundError when there is no adapter at the path.
- ``POST /v1/unload_lora_adapter`` ``{"lora_name"}``: 200, or 404 ``The lora adapter '<name>' cannot be found.``
- ``GET /v1/models``: the base model card, then one card per loaded adapter with ``parent`` set.
- ``POST /v1/chat/completions``: greedy answers from the base model or the named adapter; an unknown model 404.
- ``--api-key``: every /v1 route wants ``Authorization: Bearer <key>``, else 401 ``{"error": "Unauthorized"}``.
Errors are vLLM's ``ErrorResponse``: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from loopback_server import AppThread


def _error(message: str, err_type: str, code: int, param: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": err_type, "param": param, "code": code}}, status=code)


class VllmLoraDouble:
    """Serves ``served_name`` (the model at ``model_path``) on 127.0.0.1 from a background thread."""

    def __init__(self, model_path: str, served_name: str, max_lora_rank: int = 16, api_key: str | None = None) -> None:
        self.model_path, self.served_name, self.max_lora_rank, self.api_key = model_path, served_name, max_lora_rank, api_key
        self.events: list[tuple[str, str]] = []  # ("load"|"chat"|"unload", name)
        self.loaded: dict[str, str] = {}  # name -> path
        self.port = 0
        self._lock = threading.Lock()
        self._lm: Any = None
        self._peft: Any = None
        self._server: AppThread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # model ---------------------------------------------------------------------------------------
    def _load_model(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(self.model_path)
        self._lm = AutoModelForCausalLM.from_pretrained(self.model_path).eval()

    def _add_lora(self, name: str, path: str) -> None:
        from peft import PeftModel

        if not (Path(path) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"Loading lora {name} failed: No adapter found for {path}")
        rank = int(json.loads((Path(path) / "adapter_config.json").read_text()).get("r") or 0)
        if rank > self.max_lora_rank:
            raise ValueError(f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}.")
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._lm, path, adapter_name=name).eval()
        else:
            self._peft.load_adapter(path, adapter_name=name)

    def _remove_lora(self, name: str) -> None:
        if len(self.loaded) == 1:
            self._lm, self._peft = self._peft.unload(), None  # the last one: back to the bare base model
        else:
            self._peft.delete_adapter(name)

    def _answer(self, body: dict[str, Any]) -> str:
        import torch

        ids = self._tok.apply_chat_template(body["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True)
        model = body["model"]
        with torch.no_grad():
            if model == self.served_name:
                lm = self._peft if self._peft is not None else self._lm
                if self._peft is not None:
                    with self._peft.disable_adapter():
                        out = lm.generate(**ids, max_new_tokens=int(body.get("max_tokens") or 16), do_sample=False)
                else:
                    out = lm.generate(**ids, max_new_tokens=int(body.get("max_tokens") or 16), do_sample=False)
            else:
                self._peft.set_adapter(model)
                out = self._peft.generate(**ids, max_new_tokens=int(body.get("max_tokens") or 16), do_sample=False)
        return str(self._tok.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)).strip()

    # routes --------------------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.api_key and request.path.startswith("/v1") and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)  # type: ignore[no-any-return]

    async def _models(self, request: web.Request) -> web.Response:
        cards = [{"id": self.served_name, "object": "model", "created": int(time.time()), "owned_by": "vllm",
                  "root": self.model_path, "parent": None, "max_model_len": 8192}]
        cards += [{"id": n, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": p, "parent": self.served_name}
                  for n, p in self.loaded.items()]
        return web.json_response({"object": "list", "data": cards})

    async def _load(self, request: web.Request) -> web.Response:
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400)
        if name in self.loaded:
            return _error(f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput", 400)
        try:
            await self._locked(self._add_lora, name, path)
        except FileNotFoundError as exc:
            return _error(str(exc), "NotFoundError", 404)
        except Exception as exc:  # noqa: BLE001 - vLLM answers every other load failure with its message
            return _error(str(exc), "BadRequestError", 400)
        self.loaded[name] = path
        self.events.append(("load", name))
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def _unload(self, request: web.Request) -> web.Response:
        name = (await request.json()).get("lora_name")
        if name not in self.loaded:
            return _error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)
        await self._locked(self._remove_lora, name)
        del self.loaded[name]
        self.events.append(("unload", name))
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = body.get("model")
        if model != self.served_name and model not in self.loaded:
            return _error(f"The model `{model}` does not exist.", "NotFoundError", 404, "model")
        self.events.append(("chat", model))
        text = await self._locked(self._answer, body)
        return web.json_response({"id": "chatcmpl-double", "object": "chat.completion", "created": int(time.time()), "model": model,
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    async def _locked(self, fn: Any, *args: Any) -> Any:
        def run() -> Any:
            with self._lock:
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(None, run)

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> VllmLoraDouble:
        self._load_model()
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/load_lora_adapter", self._load)
        app.router.add_post("/v1/unload_lora_adapter", self._unload)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._server = AppThread(app, name="vllm-lora-double")
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> VllmLoraDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
