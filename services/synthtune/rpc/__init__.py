"""gRPC: generated stubs, the shared server bootstrap, long-running operations and stage servicers."""
