"""Write the pipeline spec's JSON Schema to schemas/pipeline.schema.json (`make schema`); `--check` only compares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from synthtune.spec import json_schema_text

TARGET = Path(__file__).resolve().parents[1] / "schemas" / "pipeline.schema.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=TARGET, help="where the schema goes")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the spec, write nothing")
    args = parser.parse_args(argv)
    text = json_schema_text()
    current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
    if args.check:
        if current != text:
            print(f"{args.output} is stale: run `make schema` and commit it", file=sys.stderr)
            return 1
        print(f"{args.output} is current")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
