"""The evaluate stage with fake answerers: adapter/base checks, the temperature sweep, the forgetting probe, bootstrap, leaderboard."""

from __future__ import annotations

import json

import pytest
from eval_fixtures import (
    FakeAnswers,
    RecordingProgress,
    make_adapter,
    make_prepared,
    pipeline,
    read_evaluation,
    ticket,
    user_text,
)

from synthtune.errors import InvalidInput
from synthtune.evaluator.answers import check_adapter_base
from synthtune.evaluator.scoring import ModelResult, bootstrap_ci, gains, verdict
from synthtune.evaluator.stage import probe_items

TICKETS = [ticket(i, f"Caps crooked on head {i}", "Reset the chuck") for i in range(2, 5)]


@pytest.fixture
def two_models(tmp_path):  # type: ignore[no-untyped-def]
    folders = []
    for name in ("model-a", "model-b"):
        folder = tmp_path / "models" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
        folders.append(folder)
    return folders


def test_an_adapter_for_another_base_model_is_refused_naming_both(file_store, two_models):
    a, b = two_models
    adapter = make_adapter(file_store, str(a))
    with pytest.raises(InvalidInput) as err:
        check_adapter_base(file_store.open(adapter), str(b))
    assert str(a) in str(err.value) and str(b) in str(err.value) and adapter.id in str(err.value)


def test_the_same_model_by_another_name_is_accepted(file_store, two_models, tmp_path):
    a, _ = two_models
    # a relative path (as the pipeline YAML wrote it) and the absolute path are one model
    check_adapter_base(file_store.open(make_adapter(file_store, "models/model-a")), str(a), base_dir=str(tmp_path))
    check_adapter_base(file_store.open(make_adapter(file_store, str(a) + "/")), str(a))


def test_the_embedded_name_and_its_converted_folder_are_one_model(file_store):
    from synthtune.llm.models import resolve_model

    folder = resolve_model("smollm2-135m-instruct")
    check_adapter_base(file_store.open(make_adapter(file_store, "smollm2-135m-instruct")), folder)
    check_adapter_base(file_store.open(make_adapter(file_store, folder)), "smollm2-135m-instruct")
    with pytest.raises(InvalidInput, match="HuggingFaceTB/SmolLM2-360M-Instruct.*smollm2-135m-instruct"):
        check_adapter_base(file_store.open(make_adapter(file_store, "HuggingFaceTB/SmolLM2-360M-Instruct")), "smollm2-135m-instruct")


def test_the_stage_checks_adapters_before_answering(file_store, two_models, monkeypatch):
    from synthtune.evaluator import answers, run

    fake = FakeAnswers(lambda *a: "x")
    monkeypatch.setattr(answers, "generate_answers", fake)
    a, b = two_models
    spec = pipeline(base_model=str(b), forgetting_probe=False)
    with pytest.raises(InvalidInput, match="trained on"):
        run(spec, {"prepared": make_prepared(file_store, TICKETS), "adapter:record_qa": make_adapter(file_store, str(a))},
            file_store, RecordingProgress())
    assert fake.calls == []


def test_temperature_sweep_with_samples_counts_progress_right(file_store, monkeypatch):
    from synthtune.evaluator import answers, run

    fake = FakeAnswers(lambda model, messages, t, s: f"Fix: reset the chuck ({model}, t={t}, sample {s})")
    monkeypatch.setattr(answers, "generate_answers", fake)
    progress = RecordingProgress()
    spec = pipeline(metrics=["rouge"], temperatures=[0, 0.7], samples=3, forgetting_probe=True)
    inputs = {"prepared": make_prepared(file_store, TICKETS), "adapter:record_qa": make_adapter(file_store, "smollm2-135m-instruct")}
    metrics, preds = read_evaluation(file_store, run(spec, inputs, file_store, progress))
    probe = len(probe_items())
    assert [(c["temperature"], c["samples"]) for c in fake.calls] == [(0, 1), (0.7, 3), (0.0, 1)]  # last: the probe
    assert progress.starts == [2 * (3 * (1 + 3) + probe)] and progress.completed == progress.total
    assert set(metrics["by_temperature"]) == {"0", "0.7"}
    assert metrics["by_temperature"]["0"]["base"]["n"] == 3 and metrics["by_temperature"]["0.7"]["base"]["n"] == 9
    assert metrics["models"] == metrics["by_temperature"]["0"] and metrics["primary_temperature"] == 0
    hot = [p for p in preds if p["temperature"] == 0.7 and p["model"] == "tuned:record_qa"]
    assert sorted((p["id"], p["sample"]) for p in hot) == sorted((t["id"], s) for t in TICKETS for s in range(3))


def test_forgetting_probe_is_scored_for_base_and_tuned(file_store, monkeypatch):
    from synthtune.evaluator import answers, run

    probe = probe_items()
    assert len(probe) >= 8 and all(p["question"] and p["answer"] for p in probe)
    answers_by_question = {p["question"]: p["answer"] for p in probe}
    forgotten = {p["question"] for p in probe[: len(probe) // 2]}

    def reply(model, messages, t, s):  # type: ignore[no-untyped-def]
        text = user_text(messages)
        question = next((q for q in answers_by_question if text.startswith(q)), None)
        if question is None:
            return "Fix: reset the chuck."
        if model != "base" and question in forgotten:
            return "Reset the chuck."  # the tuned model answers everything like a ticket
        return f"It is {answers_by_question[question].upper()}."  # matching ignores case

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(reply))
    spec = pipeline(metrics=["rouge"], forgetting_probe=True)
    inputs = {"prepared": make_prepared(file_store, TICKETS), "adapter:record_qa": make_adapter(file_store, "smollm2-135m-instruct")}
    metrics, _ = read_evaluation(file_store, run(spec, inputs, file_store, RecordingProgress()))
    assert metrics["forgetting"] == {"base": 1.0, "tuned:record_qa": pytest.approx(1 - (len(probe) // 2) / len(probe))}


def _results(per_item, summaries):
    return {n: ModelResult(n, 0.0, summary=summaries.get(n, {}), per_item=p) for n, p in per_item.items()}


def test_bootstrap_ci_on_known_inputs():
    assert bootstrap_ci([], 100, 1) == [0.0, 0.0] and bootstrap_ci([0.5], 0, 1) == [0.0, 0.0]
    assert bootstrap_ci([0.2] * 7, 200, 3) == [pytest.approx(0.2)] * 2  # no spread, no interval
    diffs = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    lo, hi = bootstrap_ci(diffs, 2000, 42)
    assert bootstrap_ci(diffs, 2000, 42) == [lo, hi]  # seeded
    # the mean is 0.45 with standard error 0.287/sqrt(10) = 0.091: the 95% interval is about 0.45 +- 0.18
    assert 0.24 < lo < 0.30 and 0.60 < hi < 0.66
    assert bootstrap_ci([1.0, -1.0] * 20, 1000, 0)[0] < 0 < bootstrap_ci([1.0, -1.0] * 20, 1000, 0)[1]


def test_leaderboard_ranks_by_gain_with_intervals():
    per_item = {"base": {"rougeL": [0.1, 0.2, 0.3], "bleu_sentence": [0, 0, 0]},
                "tuned:a": {"rougeL": [0.2, 0.3, 0.4], "bleu_sentence": [0, 0, 0]},
                "tuned:b": {"rougeL": [0.5, 0.5, 0.5], "bleu_sentence": [0, 0, 0]}}
    models = {"base": {"rougeL": 0.2}, "tuned:a": {"rougeL": 0.3}, "tuned:b": {"rougeL": 0.5}}
    board = gains(_results(per_item, models), "rougeL", 500, 1)
    assert [r["method"] for r in board] == ["b", "a"]
    assert board[0]["delta"] == pytest.approx(0.3) and board[0]["score"] == 0.5 and board[0]["metric"] == "rougeL"
    assert board[1]["ci95"] == [pytest.approx(0.1), pytest.approx(0.1)]
    lo, hi = board[0]["ci95"]
    assert 0.2 - 1e-9 <= lo <= 0.3 <= hi <= 0.4 + 1e-9
    # episodes only: the board ranks by function-call correctness
    calls = {"base": {"function_call": [0.0, 1.0]}, "tuned:a": {"function_call": [1.0, 1.0]}}
    assert gains(_results(calls, {}), "function_call", 100, 1)[0]["metric"] == "function_call"


def test_the_verdict_names_function_call_accuracy_when_only_episodes_are_scored():
    calls = {"base": {"function_call": [0.0, 1.0, 0.0, 0.0]}, "tuned:event_scenario": {"function_call": [1.0, 1.0, 1.0, 0.0]}}
    board = gains(_results(calls, {}), "function_call", 100, 1)
    assert board[0]["score"] == 0.75 and board[0]["base_score"] == 0.25 and board[0]["delta"] == 0.5
    text = verdict(board, None)
    assert text.startswith("event_scenario won: function-call accuracy 0.750 vs base 0.250 (+0.500")
