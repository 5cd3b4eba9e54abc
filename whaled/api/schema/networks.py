"""Body schemas of the network routes: dockerd's ``network.CreateRequest``,
``network.ConnectOptions`` and ``network.DisconnectOptions``."""

from __future__ import annotations

from whaled.api.schema.core import BOOL, INT, STR, Body, Field, List, Map, Struct

STR_MAP = Map(STR)

IPAM_CONFIG = Struct(
    "network.IPAMConfig",
    [
        Field("Subnet", STR),
        Field("IPRange", STR),
        Field("Gateway", STR),
        Field("AuxiliaryAddresses", STR_MAP, nullable=True),
    ],
)

IPAM = Struct(
    "network.IPAM",
    [
        Field("Driver", STR),
        Field("Options", STR_MAP, nullable=True),
        Field("Config", List(IPAM_CONFIG), nullable=True),
    ],
)

#: POST /networks/create
CREATE = Body(
    Struct(
        "network.CreateRequest",
        [
            Field("Name", STR),
            Field("CheckDuplicate", BOOL),
            Field("Driver", STR),
            Field("Scope", STR),
            Field("EnableIPv4", BOOL, nullable=True),
            Field("EnableIPv6", BOOL, nullable=True),
            Field("IPAM", IPAM, nullable=True),
            Field("Internal", BOOL),
            Field("Attachable", BOOL),
            Field("Ingress", BOOL),
            Field("ConfigOnly", BOOL),
            Field("ConfigFrom", Map(STR), nullable=True),
            Field("Options", STR_MAP, nullable=True),
            Field("Labels", STR_MAP, nullable=True),
        ],
    )
)

ENDPOINT_IPAM = Struct(
    "network.EndpointIPAMConfig",
    [
        Field("IPv4Address", STR),
        Field("IPv6Address", STR),
        Field("LinkLocalIPs", List(STR), nullable=True),
    ],
)

ENDPOINT = Struct(
    "network.EndpointSettings",
    [
        Field("IPAMConfig", ENDPOINT_IPAM, nullable=True),
        Field("Links", List(STR), nullable=True),
        Field("Aliases", List(STR), nullable=True),
        Field("MacAddress", STR),
        Field("DriverOpts", STR_MAP, nullable=True),
        Field("NetworkID", STR),
        Field("EndpointID", STR),
        Field("Gateway", STR),
        Field("IPAddress", STR),
        Field("IPPrefixLen", INT),
        Field("DNSNames", List(STR), nullable=True),
    ],
)

#: POST /networks/{id}/connect
CONNECT = Body(
    Struct(
        "network.ConnectOptions",
        [Field("Container", STR), Field("EndpointConfig", ENDPOINT, nullable=True)],
    )
)

#: POST /networks/{id}/disconnect
DISCONNECT = Body(
    Struct("network.DisconnectOptions", [Field("Container", STR), Field("Force", BOOL)])
)
