"""Body schema of ``POST /volumes/create``: dockerd's ``volume.CreateOptions``."""

from __future__ import annotations

from whaled.api.schema.core import STR, Body, Field, Map, Struct

STR_MAP = Map(STR)

#: POST /volumes/create
CREATE = Body(
    Struct(
        "volume.CreateOptions",
        [
            Field("Name", STR),
            Field("Driver", STR),
            Field("DriverOpts", STR_MAP, nullable=True),
            Field("Labels", STR_MAP, nullable=True),
        ],
    )
)
