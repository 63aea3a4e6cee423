"""`python -m synthtune.trainer.job --request <store>/requests/<name>.json`: the training Job's entry point."""

from __future__ import annotations

import sys
from typing import Any

from synthtune.jobentry import main


def _train(spec: Any, inputs: dict[str, Any], store: Any, progress: Any, request: dict[str, Any]) -> Any:
    from synthtune.trainer import run

    return run(spec, inputs, store, progress, method=request["method"])


if __name__ == "__main__":
    sys.exit(main("trainer", _train))
