"""The artifact store: file:// (embedded default) and s3:// (MinIO or any S3).

What callers use is re-exported here; backends, keys and artifact internals live in the submodules."""

from synthtune.store.artifacts import Artifact, ArtifactRef, IntegrityError, artifact_id, sha256_file
from synthtune.store.s3 import S3Backend
from synthtune.store.store import Store, open_store

__all__ = ["Artifact", "ArtifactRef", "IntegrityError", "S3Backend", "Store", "artifact_id", "open_store", "sha256_file"]
