"""scripts/e2e.py turns docs/deploy.md's marked blocks into the one script the end-to-end test runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from deploy_helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))
import e2e

DOC = (REPO / "docs" / "deploy.md").read_text()
SETTINGS = {"SYNTHTUNE_STORE": "s3://synthtune/e2e", "SYNTHTUNE_S3_ENDPOINT": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "key id",
            "AWS_SECRET_ACCESS_KEY": "s'cret", "IMAGE_REPOSITORY": "localhost", "BASE_MODEL": "/models/smol"}


def small_doc(*blocks: tuple[str, str]) -> str:
    return "\n\n".join(f"<!-- {marker} -->\n```bash\n{body}\n```" if marker else body for marker, body in blocks)


SETTINGS_BLOCK = ("e2e: settings", "export " + " ".join(f"{k}=x" for k in SETTINGS))


def test_the_deploy_doc_becomes_settings_then_every_marked_block_in_order():
    script = e2e.doc_script(DOC, SETTINGS)
    assert script.startswith("set -euo pipefail\n")
    assert "export AWS_SECRET_ACCESS_KEY='s'\"'\"'cret'" in script
    for site_value in ("AKIA", "registry.example.com", "Qwen/", "amazonaws.com"):
        assert site_value not in script, f"the doc's own setting {site_value} is left in the script"
    steps = ["export SYNTHTUNE_STORE=", "kubectl create namespace synthtune", "create secret generic synthtune-auth", "helm install synthtune",
             "rollout status deploy/synthtune-controller", "helm test synthtune", "synthtune upload", "synthtune models push", "port-forward",
             "pipeline-example", "synthtune validate", "synthtune submit", "synthtune runs watch", "synthtune runs show", "--out report/"]
    positions = [script.index(s) for s in steps]
    assert positions == sorted(positions)
    for unmarked in ("docker build", "helm upgrade", "helm uninstall", "kubectl apply", "grpcurl"):
        assert unmarked not in script, f"an unmarked block of the doc made it into the script: {unmarked}"
    assert script.count(": docs/deploy.md line ") == len(e2e.doc_blocks(DOC))


def test_the_script_carries_exports_over_and_stops_at_the_first_failure(tmp_path):
    doc = small_doc(("", "Text."), SETTINGS_BLOCK, ("e2e", 'echo "$SYNTHTUNE_STORE $BASE_MODEL" > out'), ("", "```bash\necho unmarked\n```"),
                    ("e2e", "false\necho never > never"))
    run = subprocess.run(["bash", "-c", e2e.doc_script(doc, SETTINGS)], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1
    assert (tmp_path / "out").read_text() == "s3://synthtune/e2e /models/smol\n"
    assert not (tmp_path / "never").exists() and "unmarked" not in run.stdout


def test_a_marker_without_a_bash_block_is_refused_naming_its_line():
    doc = small_doc(SETTINGS_BLOCK, ("e2e", "echo ok")) + "\n\n<!-- e2e -->\n```sh\necho not bash\n```\n"
    with pytest.raises(e2e.DocError, match=r"line 11: <!-- e2e --> is not followed by a ```bash block"):
        e2e.doc_script(doc, SETTINGS)
    with pytest.raises(e2e.DocError, match="unknown marker <!-- e2e: later -->"):
        e2e.doc_script(small_doc(SETTINGS_BLOCK, ("e2e: later", "echo ok")), SETTINGS)


@pytest.mark.parametrize("blocks, message", [
    ((("e2e", "echo ok"),), "expected one <!-- e2e: settings --> block, found 0"),
    ((SETTINGS_BLOCK, SETTINGS_BLOCK, ("e2e", "echo ok")), "found 2"),
    ((("e2e", "echo ok"), SETTINGS_BLOCK), "an e2e block comes before the settings block"),
    ((SETTINGS_BLOCK,), "no <!-- e2e --> block to run"),
    ((("e2e: settings", "export SYNTHTUNE_STORE=s3://b/p NEW_SETTING=1"), ("e2e", "echo ok")), "NEW_SETTING"),
])
def test_a_doc_the_harness_cannot_run_is_refused(blocks, message):
    with pytest.raises(e2e.DocError, match=message):
        e2e.doc_script(small_doc(*blocks), SETTINGS)
