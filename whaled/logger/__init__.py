"""Container logs with Docker's json-file semantics over the CRI ("k8s-file") file that
conmon writes for each container.

- ``crilog``: the file format, parsed (pure).
- ``options``: log driver names and options, validated like dockerd (pure).
- ``reader``: ``read_logs`` — stream selection, since/until, tail, follow across rotations.
- ``rotate``: ``LogRotator`` — size-based rotation of a running container's file.

``whaled.runtime`` and ``whaled.logger`` are siblings: neither imports the other. The daemon
hands the rotator the task's ``reopen_log`` as a plain callable.
"""

from whaled.logger.options import LogOptions, check_readable, parse_log_config
from whaled.logger.reader import LogEntry, read_logs
from whaled.logger.rotate import LogRotator

__all__ = [
    "LogEntry",
    "LogOptions",
    "LogRotator",
    "check_readable",
    "parse_log_config",
    "read_logs",
]
