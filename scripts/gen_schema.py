"""Write the pipeline spec's JSON Schema to schemas/pipeline.schema.json (`make schema`)."""

from __future__ import annotations

import sys
from pathlib import Path

from synthtune.spec import json_schema_text

TARGET = Path(__file__).resolve().parents[1] / "schemas" / "pipeline.schema.json"


def main() -> int:
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(json_schema_text(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
