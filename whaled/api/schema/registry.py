"""Body schema of ``POST /auth`` (``docker login``): dockerd's ``registry.AuthConfig``."""

from __future__ import annotations

from whaled.api.schema.core import STR, Body, Field, Struct

#: POST /auth
AUTH = Body(
    Struct(
        "registry.AuthConfig",
        [
            Field("username", STR),
            Field("password", STR),
            Field("auth", STR),
            Field("email", STR),
            Field("serveraddress", STR),
            Field("identitytoken", STR),
            Field("registrytoken", STR),
        ],
    )
)
