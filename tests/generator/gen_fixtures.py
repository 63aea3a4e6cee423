"""Generator test helpers: prepared artifacts from the shared datasets, a manual and an event log."""

from __future__ import annotations

import csv
import json
import re
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
REPO_ROOT = HERE.parents[1]


def _record(rid: str, fields: dict[str, Any], file: str, row: int) -> dict[str, Any]:
    return {"id": rid, "type": "record", "fields": {k: v for k, v in fields.items() if v not in (None, "")},
            "text": "", "source": {"file": file, "row": row}}


def fmea_records(datasets: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """FMEA rows with a recommended action, as prepared records (one per row)."""
    out = []
    with open(datasets / "mining_truck_fmea.csv", encoding="utf-8") as f:
        for row_no, row in enumerate(csv.DictReader(f), 2):
            if not row["Recommended Action"].strip():
                continue
            out.append(_record(f"mining_truck_fmea.csv:{row_no}", {
                "problem": " ".join(row["Potential Failure Mode"].split()),
                "machine": f"mining truck {row['Component'].lower()} ({row['Sub-Component'].lower()})",
                "cause": row["Potential Cause(s) of Failure"].strip(),
                "solution": row["Recommended Action"].strip(),
                "effects": row["Potential Effect(s) of Failure"].strip(),
            }, "mining_truck_fmea.csv", row_no))
    return out[:limit]


def excavator_records(datasets: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Labelled excavator work orders with an action, unique short texts, as prepared records."""
    out, seen = [], set()
    with open(datasets / "excavator_work_orders_labelled.csv", encoding="utf-8") as f:
        for row_no, row in enumerate(csv.DictReader(f), 2):
            text = row["OriginalShorttext"].strip()
            if not row["Action"] or text.lower() in seen:
                continue
            seen.add(text.lower())
            out.append(_record(f"excavator_work_orders_labelled.csv:{row_no}", {
                "problem": text,
                "machine": f"excavator {row['Asset']} {row['MajorSystem'].replace('_', ' ').lower()}".strip(),
                "cause": row["FM"].replace("_", " "),
                "solution": row["Action"].replace("_", " and "),
            }, "excavator_work_orders_labelled.csv", row_no))
    return out[:limit]


def manual_chunks() -> list[dict[str, Any]]:
    """The test manual split into one chunk per section."""
    text = (DATA / "manual.md").read_text(encoding="utf-8")
    sections = [s.strip() for s in re.split(r"^## ", text, flags=re.M)[1:]]
    return [{"id": f"manual.md:{k}", "type": "chunk", "fields": {"title": s.splitlines()[0]},
             "text": s.split("\n", 1)[1].strip(), "source": {"file": "manual.md", "page": k}}
            for k, s in enumerate(sections, 1)]


def episodes() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "episodes.jsonl").read_text().splitlines() if line.strip()]


def make_prepared(store, train, test=(), validation=()):  # type: ignore[no-untyped-def]
    """A ``prepared`` artifact holding exactly these records."""
    writer = store.create("prepared", [], {"fixture": uuid.uuid4().hex}, producer="tests")
    writer.write_jsonl("train.jsonl", train)
    writer.write_jsonl("validation.jsonl", validation)
    writer.write_jsonl("test.jsonl", test)
    writer.write_jsonl("rejects.jsonl", [])
    writer.write_json("stats.json", {"train": len(train), "validation": len(validation), "test": len(test)})
    return writer.commit()


def pipeline(**generate: Any):  # type: ignore[no-untyped-def]
    """A PipelineSpec with the given ``generate`` section."""
    from synthtune.spec import PipelineSpec

    return PipelineSpec.model_validate({"version": 1, "name": "gen-test", "source": {"paths": ["x.csv"]}, "generate": generate})


def read_artifact(store, ref):  # type: ignore[no-untyped-def]
    art = store.open(ref)
    return list(art.iter_jsonl("data.jsonl")), list(art.iter_jsonl("rejects.jsonl")), art.stats
