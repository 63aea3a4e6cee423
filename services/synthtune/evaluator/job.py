"""`python -m synthtune.evaluator.job --request <store>/requests/<name>.json`: the evaluation Job's entry point."""

from __future__ import annotations

import sys
from typing import Any

from synthtune.jobentry import main


def _evaluate(spec: Any, inputs: dict[str, Any], store: Any, progress: Any, request: dict[str, Any]) -> Any:
    from synthtune.evaluator import run

    return run(spec, inputs, store, progress)


if __name__ == "__main__":
    sys.exit(main("evaluator", _evaluate))
