"""Typed schemas of the request bodies, applied at the API edge (see ``core``).

A router reads a body with ``decode_body(raw, <BODY>)``: what it gets has dockerd's canonical
keys and checked types, so nothing below the API sees a wrong-typed value. A new resource
(networks, volumes) adds its tables in a sibling module and uses the same ``decode_body``.
"""

from whaled.api.schema.core import Body, BodyError, Field, Struct, check_value, decode_body

__all__ = ["Body", "BodyError", "Field", "Struct", "check_value", "decode_body"]
