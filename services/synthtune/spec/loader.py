"""Load pipeline YAML keeping node positions, so every problem names its line and column."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from synthtune.errors import InvalidInput
from synthtune.spec.pipeline import PipelineSpec

# A pipeline file is a few kB; these bounds stop "billion laughs" alias bombs before anything expands.
MAX_SPEC_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_NODES = 100_000


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


def _plain(node: Any, filename: str = "<string>", budget: list[int] | None = None) -> Any:
    """Plain dicts and lists; aliases are expanded here, so the node count is bounded (MAX_NODES)."""
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidInput(f"{filename}: the spec expands to more than {MAX_NODES:,} values (aliases nested too deep?)")
    if isinstance(node, dict):
        return {str(k): _plain(v, filename, budget) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, filename, budget) for v in node]
    return node


def _check_bounds(yaml: YAML, text: str, filename: str) -> None:
    """Refuse oversized text and alias-heavy YAML before composing it, naming the line of the alias over the limit."""
    if len(text) > MAX_SPEC_BYTES:
        raise InvalidInput(f"{filename}: a pipeline file is at most {MAX_SPEC_BYTES // 1024} KiB (got {len(text):,} characters)")
    aliases = 0
    for event in yaml.parse(io.StringIO(text)):
        if type(event).__name__ == "AliasEvent":
            aliases += 1
            if aliases > MAX_ALIASES:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise InvalidInput(f"{filename}:{line}: more than {MAX_ALIASES} YAML aliases (*name); write the values out")


def parse_yaml(text: str, filename: str = "<string>") -> Any:
    yaml = YAML(typ="rt")
    try:
        _check_bounds(yaml, text, filename)
        return yaml.load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        context = ""
        if exc.context and exc.context_mark is not None:
            context = f" ({exc.context} at {exc.context_mark.line + 1}:{exc.context_mark.column + 1})"
        raise InvalidInput(f"{where}: not valid YAML: {exc.problem}{context}") from None
    except ReaderError as exc:  # a control character: ruamel says where by character offset
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise InvalidInput(f"{filename}:{line}: not valid YAML: character {exc.character:#x} is not allowed") from None
    except YAMLError as exc:
        raise InvalidInput(f"{filename}: not valid YAML: {exc}") from None


def _data_path(data: Any, loc: tuple[Any, ...], missing: bool) -> tuple[Any, ...]:
    """``loc`` without pydantic's union-branch tags (``float``, ``literal[False]``, model names)."""
    path: list[Any] = []
    node = data
    for i, key in enumerate(loc):
        in_map = isinstance(node, dict) and key in node
        in_seq = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if in_map or in_seq:
            node = node[key]
        elif not (missing and i == len(loc) - 1):
            continue  # a branch tag, not a key of the file
        path.append(key)
    return tuple(path)


def _message(err: Any) -> tuple[str, str]:
    """What is wrong, and `` (got VALUE)`` for short scalar inputs."""
    if err["type"] == "extra_forbidden":
        return "unknown key (check its spelling and indentation)", ""
    if err["type"] == "missing":
        return "required key is missing", ""
    value = err.get("input")
    got = f" (got {value!r})" if isinstance(value, str | int | float | bool) and len(repr(value)) <= 60 else ""
    return str(err["msg"]).removeprefix("Value error, "), got


def problems_for(data: Any, exc: ValidationError, filename: str) -> list[str]:
    """One line per problem, ``file:line:col: dotted.path: what is wrong``, in file order."""
    grouped: dict[tuple[Any, ...], tuple[list[str], str]] = {}
    for err in exc.errors():
        path = _data_path(data, tuple(err["loc"]), err["type"] == "missing")
        message, got = _message(err)
        messages, _ = grouped.setdefault(path, ([], got))
        if message not in messages:
            messages.append(message)
    problems = []
    for path, (messages, got) in grouped.items():
        pos = _position(data, path)
        where = f"{filename}:{pos[0]}:{pos[1]}" if pos else filename
        dotted = ".".join(str(p) for p in path) or "(top level)"
        if len(messages) > 1:  # one error per branch of a union: say what would be accepted
            message = "expected " + " or ".join(m.removeprefix("Input should be ").split(",")[0] for m in messages)
        else:
            message = messages[0]
        problems.append((pos or (0, 0), f"{where}: {dotted}: {message}{got}"))
    return [text for _, text in sorted(problems, key=lambda p: p[0])]


def load_spec_text(text: str, filename: str = "<string>", base_dir: str | None = None) -> PipelineSpec:
    """Validate pipeline YAML text; raises InvalidInput listing every problem with line and column."""
    data = parse_yaml(text, filename)
    if not isinstance(data, dict):
        raise InvalidInput(f"{filename}:1:1: a pipeline file must be a YAML mapping (version, name, source, ...)")
    try:
        spec = PipelineSpec.model_validate(_plain(data, filename))
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
