"""Names the gRPC tests share (a module of its own: `conftest` is ambiguous when several test folders run together)."""

from __future__ import annotations

from synthtune.store import ArtifactRef, Store

TOKEN = "s3cret-token"
SPEC = "version: 1\nname: t\nsource: {paths: [a.csv]}\ngenerate: {methods: [{name: record_qa}, {name: evol, label: fm}]}\n"


def make_artifact(store: Store, kind: str, name: str = "x") -> ArtifactRef:
    """A real (tiny) artifact, so stage servicers find the inputs they are given."""
    with store.create(kind, [], {"name": name}, "test") as writer:
        writer.write_json("data.json", {"name": name})
        return writer.commit()
