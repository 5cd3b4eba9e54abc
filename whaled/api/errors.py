"""The one place where domain errors become HTTP statuses."""

from __future__ import annotations

from whaled import errors

STATUS_BY_ERROR: tuple[tuple[type[errors.WhaledError], int], ...] = (
    (errors.NotModified, 304),
    (errors.InvalidParameter, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Unsupported, 501),
    (errors.Unavailable, 503),
    (errors.SystemFailure, 500),
)


def status_for(error: errors.WhaledError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500
