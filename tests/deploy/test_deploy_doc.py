"""docs/deploy.md matches the chart: its values keys exist, its defaults are the chart's, its commands render."""

from __future__ import annotations

import re

import pytest
import yaml
from deploy_helpers import CHART, REPO, by_kind, chart, helm

DOC = (REPO / "docs" / "deploy.md").read_text()
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def lookup(key: str):
    node = VALUES
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def doc_value_keys() -> set[str]:
    keys = set(re.findall(r"`([a-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)+)`", DOC))
    keys |= set(re.findall(r"--set ([A-Za-z][\w.]*)=", DOC))
    return {k for k in keys if k.split(".")[0] in VALUES}


def marked_blocks(marker: str) -> list[str]:
    """The bash blocks right after an HTML comment ``<!-- marker -->``, in document order."""
    return re.findall(rf"<!-- {re.escape(marker)} -->\n```bash\n(.*?)\n```", DOC, re.S)


def settings() -> dict[str, str]:
    (block,) = marked_blocks("e2e: settings")
    return dict(re.findall(r"(\w+)=(\S+)", block))


def install_command_sets() -> list[str]:
    block = DOC[DOC.index("helm install synthtune"):]
    block = block[: block.index("```")]
    env = settings()
    return [re.sub(r'"?\$(\w+)"?', lambda m: env[m.group(1)], e) for e in re.findall(r"--set (\S+)", block)]


def test_every_values_key_the_doc_names_exists():
    keys = doc_value_keys()
    assert len(keys) >= 30
    missing = []
    for key in sorted(keys):
        try:
            lookup(key)
        except KeyError:
            missing.append(key)
    assert missing == [], f"docs/deploy.md names values that values.yaml lacks: {missing}"


def test_documented_defaults_are_the_charts():
    rows = re.findall(r"^\| `([\w.]+)`(?:, `([\w.]+)`)? \| `([^`|]+)`(?:, `([^`|]+)`)? \|", DOC, re.M)
    checked = 0
    for key, key2, default, default2 in rows:
        if key.split(".")[0] not in VALUES:
            continue
        if default.startswith("{") or ": " in default:  # a mapping, written as YAML
            assert yaml.safe_load(default if default.startswith("{") else "{" + default + "}") == lookup(key), key
            checked += 1
            continue
        pairs = [(key, default)] + ([(key2, default2 or default)] if key2 else [])
        for k, d in pairs:
            actual = lookup(k)
            actual_text = str(actual).lower() if isinstance(actual, bool) else str(actual)
            assert actual_text == d, f"docs/deploy.md says {k} defaults to {d!r}; values.yaml has {actual!r}"
            checked += 1
    assert checked >= 12


def test_the_documented_install_renders_and_names_real_objects():
    values: dict = {}
    for expression in install_command_sets():
        merged = helm.parse_set_string(expression)
        key, value = next(iter(merged.items()))
        values.setdefault(key, {})
        values[key] = _merge(values[key], value) if isinstance(value, dict) else value
    out = chart().render(values, name="synthtune", namespace="synthtune", is_install=True)
    objects = [d for path, text in out.items() if not path.endswith(".txt") for d in yaml.safe_load_all(text) if d]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for kind, name in [("Service", "synthtune-controller"), ("Deployment", "synthtune-controller"), ("ConfigMap", "synthtune-config"),
                       ("ServiceAccount", "synthtune-job")]:
        assert (kind, name) in names, (kind, name)
        assert name in DOC or kind == "ServiceAccount"
    secrets = {ref["secretKeyRef"]["name"] for d in by_kind(objects, "Deployment")
               for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
               for ref in [e.get("valueFrom", {})] if "secretKeyRef" in ref}
    for secret in secrets:
        assert f"create secret generic {secret}" in DOC, secret


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


@pytest.mark.parametrize("path", ["helm/synthtune", "k8s/train-job.yaml", "Dockerfile.generator", "Dockerfile.trainer", "Dockerfile.evaluator"])
def test_files_the_doc_uses_exist(path):
    assert (REPO / path).exists()
    assert path.split(".")[0] in DOC


def test_doc_walks_from_empty_cluster_to_report():
    steps = ["kubectl create namespace synthtune", "helm install synthtune helm/synthtune", "helm test synthtune",
             "synthtune upload examples/quickstart/work_orders.csv", "synthtune models push", "synthtune submit pipeline.yaml --controller",
             'synthtune runs watch "$RUN_ID"', 'synthtune report "$RUN_ID" --store "$SYNTHTUNE_STORE" --out report/',
             "kubectl apply -k my-train/", "kubectl apply -k k8s/", "nvidia.com/gpu.product"]
    positions = [DOC.index(step) for step in steps]
    assert positions[:8] == sorted(positions[:8]), "the steps appear in the order a user runs them"


def test_the_e2e_path_is_marked_in_order_and_self_contained():
    """The container end-to-end test runs the `<!-- e2e -->` blocks in order, after its own settings block:
    from an empty namespace through records and a model in the store to the downloaded report."""
    assert DOC.index("<!-- e2e: settings -->\n```") < DOC.index("<!-- e2e -->\n```")
    names = set(settings())
    assert {"SYNTHTUNE_STORE", "SYNTHTUNE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "IMAGE_REPOSITORY", "BASE_MODEL"} <= names
    script = "\n".join(marked_blocks("e2e"))
    assert script.count("\n") >= 25 and DOC.count("<!-- e2e -->\n") == len(marked_blocks("e2e")), "every marker precedes a bash block"
    order = ["kubectl create namespace", "create secret generic synthtune-s3", "helm install", "helm test", "synthtune upload",
             "synthtune models push", "pipeline-example", "synthtune validate", "synthtune submit", "synthtune runs watch",
             "synthtune report"]
    assert [script.index(step) for step in order] == sorted(script.index(step) for step in order)
    used = set(re.findall(r"\$\{?(\w+)", script)) - {"RUN_ID"}
    assert used <= names | {"SYNTHTUNE_AUTH_TOKEN"}, used - names
    assert "RUN_ID=$(synthtune submit" in script and "--out report/" in script
    for line in script.splitlines():  # nothing a user would have to fill in by hand
        assert "..." not in line and "RUN_ID" not in line.replace("$RUN_ID", "").replace("RUN_ID=", ""), line
