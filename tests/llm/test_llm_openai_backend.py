"""The openai backend against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from loopback_server import LoopbackOpenAI

from synthtune.errors import InvalidInput, PermanentError
from synthtune.llm.chat import ChatRequest, make_backend
from synthtune.llm.openai_backend import retry_after_s
from synthtune.llm.structured import parse_json
from synthtune.spec.generate import ModelEndpointSpec

pytestmark = pytest.mark.integration


def spec_for(server: LoopbackOpenAI, **extra) -> ModelEndpointSpec:  # type: ignore[no-untyped-def]
    return ModelEndpointSpec(backend="openai", model="loopback", base_url=server.base_url, backoff_s=0.01, **extra)


def ask(text: str, **extra) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest(messages=[{"role": "user", "content": text}], key=text, **extra)


def test_requests_carry_sampling_and_results_keep_order() -> None:
    with LoopbackOpenAI(latency=0.01) as server:
        backend = make_backend(spec_for(server, temperature=0.3, top_p=0.9, max_tokens=64, seed=7, concurrency=3))
        try:
            results = backend.complete([ask(f"q{i}") for i in range(10)] + [ask("hot", temperature=1.5, seed=99, max_tokens=5)])
        finally:
            backend.close()
    assert [r.text for r in results[:10]] == [f"reply to: q{i}" for i in range(10)]
    assert all(r.ok and r.finish_reason == "stop" and r.prompt_tokens == 1 for r in results)
    bodies = {b["messages"][0]["content"]: b for b in server.requests}
    assert {k: bodies["q0"][k] for k in ("temperature", "top_p", "max_tokens", "seed")} == {"temperature": 0.3, "top_p": 0.9, "max_tokens": 64, "seed": 7}
    assert {k: bodies["hot"][k] for k in ("temperature", "max_tokens", "seed")} == {"temperature": 1.5, "max_tokens": 5, "seed": 99}
    assert server.max_in_flight == 3  # the concurrency limit holds


def test_retry_after_is_honoured_and_timeouts_are_per_request() -> None:
    with LoopbackOpenAI() as server:
        server.faults = ["429:1"]
        backend = make_backend(spec_for(server, concurrency=1, timeout_s=0.5, max_retries=2))
        try:
            started = time.monotonic()
            first = backend.complete([ask("a")])
            waited = time.monotonic() - started
            server.faults = ["timeout:2"]
            started = time.monotonic()
            second = backend.complete([ask("b")])
            timed = time.monotonic() - started
        finally:
            backend.close()
    assert first[0].text == "reply to: a" and 1.0 <= waited < 3
    assert second[0].text == "reply to: b" and 0.5 <= timed < 3
    assert len(server.requests) == 4


def test_retries_exhausted_give_an_error_result_not_an_exception() -> None:
    with LoopbackOpenAI() as server:
        server.fault_for = lambda body: "500" if body["messages"][0]["content"] == "bad" else None
        backend = make_backend(spec_for(server, max_retries=2))
        try:
            good, bad = backend.complete([ask("good"), ask("bad")])
        finally:
            backend.close()
    assert good.ok and not bad.ok and "HTTP 500" in (bad.error or "") and "after 2 retries" in (bad.error or "")
    assert sum(1 for b in server.requests if b["messages"][0]["content"] == "bad") == 3


def test_garbage_and_truncated_replies() -> None:
    with LoopbackOpenAI() as server:
        server.faults = ["garbage", "garbage"]
        backend = make_backend(spec_for(server, max_retries=1, concurrency=1))
        try:
            (garbage,) = backend.complete([ask("x")])
            server.faults = ["truncated"]
            (cut,) = backend.complete([ask("y")])
        finally:
            backend.close()
    assert not garbage.ok and "unreadable reply" in (garbage.error or "")
    assert cut.ok and cut.finish_reason == "length"


def test_structured_output_uses_json_schema_and_falls_back_when_refused() -> None:
    schema = {"title": "judgement", "type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    with LoopbackOpenAI(lambda body: '```json\n{"score": 7,}\n```') as server:
        backend = make_backend(spec_for(server))
        try:
            value = parse_json(backend.complete([ask("rate", json_schema=schema)])[0].text)
            assert server.requests[-1]["response_format"] == {"type": "json_schema", "json_schema": {"name": "judgement", "schema": schema}}
            server.reject_params = {"response_format"}
            again = parse_json(backend.complete([ask("rate again", json_schema=schema)])[0].text)
        finally:
            backend.close()
    assert value == {"score": 7} and again == {"score": 7}
    assert "response_format" not in server.requests[-1]  # retried without it, tolerant parsing did the rest


def test_max_completion_tokens_for_servers_that_want_it() -> None:
    with LoopbackOpenAI() as server:
        server.reject_params = {"max_tokens"}
        backend = make_backend(spec_for(server, max_tokens=33))
        try:
            (result,) = backend.complete([ask("new model")])
        finally:
            backend.close()
    assert result.ok and server.requests[-1]["max_completion_tokens"] == 33


def test_tool_calls_come_back_in_openai_format() -> None:
    tools = [{"type": "function", "function": {"name": "STOP", "parameters": {"type": "object", "properties": {}}}}]
    with LoopbackOpenAI(lambda body: {"content": "jam", "tool_calls": [{"name": "STOP", "arguments": {"target": "c1"}}]}) as server:
        backend = make_backend(spec_for(server))
        try:
            (result,) = backend.complete([ask("jam!", tools=tools)])
        finally:
            backend.close()
    assert server.requests[-1]["tools"] == tools
    assert result.finish_reason == "tool_calls" and result.tool_calls[0]["function"]["name"] == "STOP"
    assert json.loads(result.tool_calls[0]["function"]["arguments"]) == {"target": "c1"}


def test_unknown_model_and_missing_key_variable_are_clear(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with LoopbackOpenAI(model="real-model") as server:
        backend = make_backend(spec_for(server))
        try:
            with pytest.raises(PermanentError, match=r"HTTP 404 .*no model 'loopback'.*base_url"):
                backend.complete([ask("x")])
        finally:
            backend.close()
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(InvalidInput, match="NO_SUCH_KEY_VAR"):
        make_backend(ModelEndpointSpec(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_VAR"))


def test_retry_after_header_forms() -> None:
    def exc(headers):  # type: ignore[no-untyped-def]
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert retry_after_s(exc({"retry-after": "3"})) == 3.0
    assert retry_after_s(exc({"retry-after-ms": "250"})) == 0.25
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < (retry_after_s(exc({"retry-after": future})) or 0) <= 31
    assert retry_after_s(exc({})) is None and retry_after_s(ValueError()) is None


def test_malformed_and_hostile_retry_after_values_fall_back_to_backoff() -> None:
    def exc(headers):  # type: ignore[no-untyped-def]
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    for bad in ("120s", "Wed, 99 Foo 2020 25:61:61 GMT", "nan", "inf", "-inf", "soon", "1e999"):
        assert retry_after_s(exc({"retry-after": bad})) is None, bad
    assert retry_after_s(exc({"retry-after": "-5"})) == 0.0
    assert retry_after_s(exc({"retry-after-ms": "-5000"})) == 0.0
    assert retry_after_s(exc({"retry-after-ms": "nan", "retry-after": "2"})) == 2.0
    past = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 60))
    assert retry_after_s(exc({"retry-after": past})) == 0.0


def test_every_retry_after_form_is_retried_not_a_failed_stage() -> None:
    forms = ["429:120s", "429:garbage date", "429ms:-5000", "429ms:nan", "429:-1", "429:0", "429ms:10", "429:inf"]
    with LoopbackOpenAI() as server:
        server.faults = list(forms)
        backend = make_backend(spec_for(server, concurrency=1, max_retries=len(forms)))
        try:
            started = time.monotonic()
            [result] = backend.complete([ask("after the storm")])
        finally:
            backend.close()
    assert result.error is None and result.text.startswith("reply to: after the storm")
    assert len(server.requests) == len(forms) + 1
    assert time.monotonic() - started < 10  # bad values fell back to the spec's 0.01 s backoff, none waited 120 s


def test_store_secret_never_leaves_as_a_bearer_token(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A spec naming AWS_SECRET_ACCESS_KEY is refused before any request; the server sees no secret."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret-value")
    with LoopbackOpenAI() as server:
        with pytest.raises(ValueError, match="may not name AWS_"):
            spec_for(server, api_key_env="AWS_SECRET_ACCESS_KEY")
        bypass = spec_for(server).model_copy(update={"api_key_env": "AWS_SECRET_ACCESS_KEY"})  # as code could build it
        with pytest.raises(InvalidInput, match="names a store or service secret"):
            make_backend(bypass)
    assert server.requests == []


def test_operator_lists_allowed_key_variables_and_endpoints(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEACHER_KEY", "k1")
    monkeypatch.setenv("OTHER_KEY", "k2")
    with LoopbackOpenAI(api_key="k1") as server:
        monkeypatch.setenv("SYNTHTUNE_KEY_ENVS", "TEACHER_KEY")
        monkeypatch.setenv("SYNTHTUNE_ALLOWED_ENDPOINTS", server.base_url)
        with pytest.raises(InvalidInput, match="api_key_env OTHER_KEY is not one of SYNTHTUNE_KEY_ENVS"):
            make_backend(spec_for(server, api_key_env="OTHER_KEY"))
        elsewhere = ModelEndpointSpec(backend="openai", model="loopback", base_url="http://127.0.0.2:9/v1", api_key_env="TEACHER_KEY")
        with pytest.raises(InvalidInput, match=r"base_url http://127.0.0.2:9/v1 is not allowed here \(SYNTHTUNE_ALLOWED_ENDPOINTS"):
            make_backend(elsewhere)
        backend = make_backend(spec_for(server, api_key_env="TEACHER_KEY"))
        try:
            [result] = backend.complete([ask("allowed")])
        finally:
            backend.close()
    assert result.error is None and len(server.requests) == 1
