"""OCI runtime layer: spec generation (pure), runtimes and the backend that runs containers."""
