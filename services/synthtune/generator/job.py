"""`python -m synthtune.generator.job --request <store>/requests/<name>.json`: a generation Job's entry point
(a local vLLM teacher on a GPU node)."""

from __future__ import annotations

import sys
from typing import Any

from synthtune.jobentry import main


def _generate(spec: Any, inputs: dict[str, Any], store: Any, progress: Any, request: dict[str, Any]) -> Any:
    from synthtune.generator import run

    return run(spec, inputs, store, progress, method=request["method"])


if __name__ == "__main__":
    sys.exit(main("generator", _generate))
