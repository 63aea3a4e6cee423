"""Translation through the ChatBackend interface, with a fake teacher."""

from __future__ import annotations

import pytest
from dataprep_helpers import assert_counts_add_up, load_artifact, make_spec

import synthtune.llm.chat as chat
from synthtune.dataprep import run
from synthtune.dataprep.rejects import Rejects
from synthtune.dataprep.translate import translate_records
from synthtune.errors import InvalidInput
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.progress import Progress
from synthtune.spec.prepare import TranslateSpec

ITALIAN = {
    "perdita olio cilindro sinistro": "oil leak left cylinder",
    "sostituita guarnizione": "replaced seal",
    "freno non funziona": "brake not working",
    "regolato freno": "adjusted brake",
    "rumore cuscinetto": "bearing noise",
}


class FakeTeacher:
    """Translates from a dictionary; fails or truncates on cue; records what it was asked."""

    model = "fake-teacher"

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []
        self.closed = False

    def complete(self, requests, progress=None):  # type: ignore[no-untyped-def]
        self.requests.extend(requests)
        out = []
        for r in requests:
            text = r.messages[-1]["content"]
            if "GUASTO" in text:
                out.append(ChatResult(error="HTTP 500 from teacher", finish_reason="error", key=r.key))
            elif "LUNGO" in text:
                out.append(ChatResult(text="a long transl", finish_reason="length", key=r.key))
            else:
                out.append(ChatResult(text=ITALIAN.get(text, f"EN({text})"), finish_reason="stop", prompt_tokens=10, completion_tokens=4, key=r.key))
        return out

    def close(self) -> None:
        self.closed = True


def rec(rid, problem, solution):  # type: ignore[no-untyped-def]
    return {"id": rid, "type": "record", "fields": {"problem": problem, "solution": solution, "machine": "EX1"}, "text": "", "source": {}}


def test_each_distinct_text_is_translated_once_and_failures_are_rejected():
    records = [rec("a", "perdita olio cilindro sinistro", "sostituita guarnizione"),
               rec("b", "perdita olio cilindro sinistro", "sostituita guarnizione"),
               rec("c", "freno non funziona GUASTO", "regolato freno"),
               rec("d", "rumore cuscinetto", "LUNGO testo")]
    teacher = FakeTeacher()
    rejects = Rejects()
    kept, usage = translate_records(records, TranslateSpec(target_language="English", source_language="Italian", batch_size=2),
                                    teacher, rejects, Progress("t"))
    assert [r["id"] for r in kept] == ["a", "b"]
    assert kept[0]["fields"] == {"problem": "oil leak left cylinder", "solution": "replaced seal", "machine": "EX1"}
    assert kept[0]["original"] == {"problem": "perdita olio cilindro sinistro", "solution": "sostituita guarnizione"}
    assert len(teacher.requests) == 6  # 8 texts, 6 distinct
    assert "from Italian into English" in teacher.requests[0].messages[0]["content"]
    assert {r["id"]: r["reason"] for r in rejects.rows} == {
        "c": "translation of field 'problem' failed: HTTP 500 from teacher",
        "d": "translation of field 'solution' failed: the translation was cut off at max_tokens",
    }
    assert usage["requests"] == 6 and usage["failed"] == 2 and usage["prompt_tokens"] == 40


def test_a_translation_in_the_wrong_language_is_rejected_with_its_reason():
    """A teacher that answers in the source language (it echoes the text) does not translate: the record is rejected."""
    italian = "la pompa perde olio dalla tenuta dell'albero dopo la manutenzione programmata"
    english = "the pump leaks oil at the shaft seal after the scheduled maintenance was done"
    replies = {italian: italian, "sostituita guarnizione": "replaced seal", english: english}

    class Echo(FakeTeacher):
        def complete(self, requests, progress=None):  # type: ignore[no-untyped-def]
            self.requests.extend(requests)
            return [ChatResult(text=replies[r.messages[-1]["content"]], finish_reason="stop", key=r.key) for r in requests]

    rejects = Rejects()
    kept, usage = translate_records([rec("a", italian, "sostituita guarnizione"), rec("b", english, "sostituita guarnizione")],
                                    TranslateSpec(target_language="English"), Echo(), rejects, Progress("t"))
    assert [r["id"] for r in kept] == ["b"]  # short texts and texts already in English pass
    assert [(r["id"], r["reason"]) for r in rejects.rows] == [("a", "translation of field 'problem' failed: the translation is not in English")]
    assert usage["failed"] == 1


def test_an_unknown_target_language_is_refused_before_any_request():
    teacher = FakeTeacher()
    with pytest.raises(InvalidInput, match="unknown language 'Klingonish'"):
        translate_records([rec("a", "freno non funziona", "regolato freno")], TranslateSpec(target_language="Klingonish"),
                          teacher, Rejects(), Progress("t"))
    assert teacher.requests == []


def test_run_translates_with_the_teacher_and_keys_the_cache_on_it(tmp_path, write, file_store, monkeypatch):
    lines = ["Problem,Machine,Action"] + [f"{it},EX{i},{sol}" for i, (it, sol) in enumerate(
        [("perdita olio cilindro sinistro", "sostituita guarnizione"), ("freno non funziona", "regolato freno"),
         ("rumore cuscinetto GUASTO", "regolato freno")])]
    write("it.csv", "\n".join(lines) + "\n")
    teachers: list[FakeTeacher] = []

    def fake_make_backend(spec, base_dir=None):  # type: ignore[no-untyped-def]
        assert spec.model == "my-teacher"
        teachers.append(FakeTeacher())
        return teachers[-1]

    monkeypatch.setattr(chat, "make_backend", fake_make_backend)
    source = {"paths": ["it.csv"], "fields": {"problem": "Problem", "machine": "Machine", "solution": "Action"}}
    prepare = {"translate": {"target_language": "English"}, "outliers": {"method": "none"}, "split": {"group_near": False}}
    spec = make_spec(tmp_path, source, prepare, generate={"teacher": {"model": "my-teacher"}})
    ref = run(spec, {}, file_store)
    result = load_artifact(file_store, ref)
    kept = sorted(r["fields"]["problem"] for s in ("train", "validation", "test") for r in result[s])
    assert kept == ["brake not working", "oil leak left cylinder"]
    assert [r["code"] for r in result["rejects"]] == ["translation_failed"]
    assert result["stats"]["translation"]["requests"] == 5
    assert teachers[0].closed
    assert_counts_add_up(result)

    other = make_spec(tmp_path, source, prepare, generate={"teacher": {"model": "my-teacher", "temperature": 0.1}})
    assert run(other, {}, file_store).id != ref.id, "another teacher is another artifact"
    assert run(spec, {}, file_store).id == ref.id and len(teachers) == 2, "same spec: cached, no teacher call"


def test_no_backend_for_translation_is_a_clear_error():
    from synthtune.dataprep.pipeline import prepare_records
    from synthtune.errors import PermanentError
    from synthtune.spec.prepare import PrepareSpec

    spec = PrepareSpec.model_validate({"translate": {"target_language": "English"}})
    with pytest.raises(PermanentError, match="no teacher backend"):
        prepare_records([rec("a", "x", "y")], spec, Rejects(), Progress("t"))
