"""Distribution errors, with dockerd's wording.

A registry answers errors as ``{"errors": [{"code", "message", "detail"}]}``; dockerd shows
one as ``"<code in lower case, _ as space>: <message>"`` (``manifest unknown: manifest
unknown``) and, for a pull, wraps the three "not there" codes into a not-found error naming
the reference (:func:`translate_pull_error`).
"""

from __future__ import annotations

from typing import Any

from whaled.errors import NotFound, SystemFailure, Unauthorized

#: Default messages of the distribution spec's error codes (used when a registry sends none).
CODE_MESSAGES: dict[str, str] = {
    "BLOB_UNKNOWN": "blob unknown to registry",
    "BLOB_UPLOAD_INVALID": "blob upload invalid",
    "BLOB_UPLOAD_UNKNOWN": "blob upload unknown to registry",
    "DIGEST_INVALID": "provided digest did not match uploaded content",
    "MANIFEST_BLOB_UNKNOWN": "blob unknown to registry",
    "MANIFEST_INVALID": "manifest invalid",
    "MANIFEST_UNKNOWN": "manifest unknown",
    "MANIFEST_UNVERIFIED": "manifest failed signature verification",
    "NAME_INVALID": "invalid repository name",
    "NAME_UNKNOWN": "repository name not known to registry",
    "SIZE_INVALID": "provided length did not match content length",
    "TAG_INVALID": "manifest tag did not match URI",
    "UNAUTHORIZED": "authentication required",
    "DENIED": "requested access to the resource is denied",
    "UNSUPPORTED": "The operation is unsupported.",
    "TOOMANYREQUESTS": "too many requests",
    "UNKNOWN": "unknown error",
}


def code_text(code: str) -> str:
    """``MANIFEST_UNKNOWN`` → ``manifest unknown`` (errcode.ErrorCode.Error)."""
    return code.replace("_", " ").lower()


class RegistryError(SystemFailure):
    """One error a registry reported (the first of its ``errors`` list)."""

    def __init__(self, code: str, message: str = "", detail: Any = None, status: int = 0) -> None:
        self.code = code
        self.registry_message = message or CODE_MESSAGES.get(code, "")
        self.detail = detail
        self.status = status
        super().__init__(f"{code_text(code)}: {self.registry_message}")


class RegistryNotFound(NotFound):
    """A pull error that means "not there (for you)": dockerd's ``notFoundError``."""

    def __init__(self, message: str, cause: RegistryError) -> None:
        super().__init__(message)
        self.cause = cause


class UnexpectedResponse(SystemFailure):
    """A registry answer that is neither success nor a parseable error document."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NoBasicAuthCredentials(SystemFailure):
    """The registry asks for basic auth and no credentials were given (a 500, as dockerd:
    a 401 would make the docker CLI prompt for a login)."""

    def __init__(self, method: str, url: str) -> None:
        super().__init__(f'{method} "{url}": no basic auth credentials')


class TokenError(Unauthorized):
    """The token server refused or answered nonsense."""


class RegistryUnreachable(SystemFailure):
    """No connection could be made to any endpoint of the registry (a 500, as dockerd)."""


class DigestMismatchError(SystemFailure):
    """Content fetched from a registry does not match its digest (or size)."""

    def __init__(self, message: str, *, expected: str, actual: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


def layer_verification_failed(digest: str) -> DigestMismatchError:
    return DigestMismatchError(
        f"filesystem layer verification failed for digest {digest}", expected=digest
    )


def manifest_verification_failed(digest: str, actual: str) -> DigestMismatchError:
    return DigestMismatchError(
        f"manifest verification failed for digest {digest}", expected=digest, actual=actual
    )


def translate_pull_error(err: Exception, *, familiar_name: str, familiar_ref: str) -> Exception:
    """dockerd's ``TranslatePullError``: DENIED, MANIFEST_UNKNOWN and NAME_UNKNOWN become
    not-found errors naming the reference; everything else is returned unchanged."""
    if not isinstance(err, RegistryError):
        return err
    if err.code == "DENIED":
        return RegistryNotFound(
            f"pull access denied for {familiar_name}, repository does not exist or may "
            f"require 'docker login': {err}",
            err,
        )
    if err.code == "MANIFEST_UNKNOWN":
        return RegistryNotFound(f"manifest for {familiar_ref} not found: {err}", err)
    if err.code == "NAME_UNKNOWN":
        return RegistryNotFound(f"repository {familiar_name} not found: {err}", err)
    return err
