"""The artifact store: file:// (embedded default) and s3:// (MinIO or any S3)."""

from synthtune.store.artifacts import (
    Artifact,
    ArtifactRef,
    ArtifactWriter,
    IntegrityError,
    artifact_id,
    check_artifact_id,
    sha256_file,
)
from synthtune.store.backend import Backend, FileBackend
from synthtune.store.keys import check_key
from synthtune.store.s3 import S3Backend
from synthtune.store.store import DEFAULT_STORE, Store, open_store

__all__ = [
    "DEFAULT_STORE", "Artifact", "ArtifactRef", "ArtifactWriter", "Backend", "FileBackend", "IntegrityError", "S3Backend",
    "Store", "artifact_id", "check_artifact_id", "check_key", "open_store", "sha256_file",
]
