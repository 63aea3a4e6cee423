"""Load pipeline YAML keeping node positions, so every problem names its line and column."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from synthtune.errors import InvalidInput
from synthtune.spec.pipeline import PipelineSpec


def _position(node: Any, path: tuple[Any, ...]) -> tuple[int, int] | None:
    """1-based (line, column) of the deepest node on ``path`` that the YAML kept a mark for."""
    best: tuple[int, int] | None = None
    if hasattr(node, "lc"):
        best = (node.lc.line + 1, node.lc.col + 1)
    for key in path:
        if isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.key(key)
            best = (line + 1, col + 1)
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line, col = node.lc.item(key)
            best = (line + 1, col + 1)
            node = node[key]
        else:
            break
    return best


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def parse_yaml(text: str, filename: str = "<string>") -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        context = ""
        if exc.context and exc.context_mark is not None:
            context = f" ({exc.context} at {exc.context_mark.line + 1}:{exc.context_mark.column + 1})"
        raise InvalidInput(f"{where}: not valid YAML: {exc.problem}{context}") from None


def problems_for(data: Any, exc: ValidationError, filename: str) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        pos = _position(data, loc)
        where = f"{filename}:{pos[0]}:{pos[1]}" if pos else filename
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        elif err["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{where}: {dotted}: {message}")
    return problems


def load_spec_text(text: str, filename: str = "<string>", base_dir: str | None = None) -> PipelineSpec:
    data = parse_yaml(text, filename)
    if not isinstance(data, dict):
        raise InvalidInput(f"{filename}:1:1: a pipeline file must be a YAML mapping (version, name, source, ...)")
    try:
        spec = PipelineSpec.model_validate(_plain(data))
    except ValidationError as exc:
        problems = problems_for(data, exc, filename)
        raise InvalidInput(f"{filename}: {len(problems)} problem(s) in the pipeline spec", problems) from None
    if spec.base_dir is None and base_dir is not None:
        spec = spec.model_copy(update={"base_dir": base_dir})
    return spec


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a pipeline file; raises InvalidInput listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{p}: no such pipeline file") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except IsADirectoryError:
        raise InvalidInput(f"{p}: is a folder, not a pipeline file") from None
    return load_spec_text(text, str(p), base_dir=str(p.resolve().parent))


def json_schema() -> dict[str, Any]:
    schema = PipelineSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "synthtune pipeline (version 1)"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
