"""`python -m synthtune.dataprep.job --request <store>/requests/<name>.json`: the prepare Job's entry point."""

from __future__ import annotations

import sys
from typing import Any

from synthtune.jobentry import main


def _prepare(spec: Any, inputs: dict[str, Any], store: Any, progress: Any, request: dict[str, Any]) -> Any:
    from synthtune.dataprep import run

    return run(spec, inputs, store, progress)


if __name__ == "__main__":
    sys.exit(main("dataprep", _prepare))
