"""Write helm/synthtune/values.schema.json from values.yaml: types inferred, unknown keys refused.

Run after changing values.yaml (`make chart-schema`); tests/deploy checks the file is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

CHART = Path(__file__).resolve().parents[1] / "helm" / "synthtune"
# Kubernetes-shaped values passed through as they are: any keys are fine.
FREE_FORM = {"nodeSelector", "resources", "commonLabels", "pipelineDefaults", "podSecurityContext", "securityContext"}


def schema_for(value: Any, key: str = "") -> dict[str, Any]:
    if key in FREE_FORM:
        return {"type": "object"}
    if key == "tolerations" or key == "pullSecrets":
        return {"type": "array", "items": {"type": "object" if key == "tolerations" else "string"}}
    if isinstance(value, dict):
        return {"type": "object", "additionalProperties": False, "properties": {k: schema_for(v, k) for k, v in value.items()}}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer", "minimum": 0}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, list):
        return {"type": "array"}
    return {"type": "string"}


def build() -> str:
    values = YAML(typ="safe").load((CHART / "values.yaml").read_text())
    schema = {"$schema": "https://json-schema.org/draft-07/schema#", "title": "synthtune chart values", **schema_for(values)}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    (CHART / "values.schema.json").write_text(build())
    print(f"wrote {CHART / 'values.schema.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
