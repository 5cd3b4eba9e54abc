"""The container request bodies of Engine API v1.45 as typed tables (pure).

Field names are dockerd's JSON names (``api/types/container``: Config, HostConfig and the
Resources it embeds, HealthConfig, RestartPolicy, LogConfig, mount.Mount, ...;
``api/types/network``: NetworkingConfig, EndpointSettings); Go type names appear in the
error messages.
"""

from __future__ import annotations

from whaled.api.schema.core import (
    BOOL,
    DURATION,
    INT,
    INT64,
    STR,
    UINT16,
    UINT32,
    UINT64,
    Body,
    Empty,
    Field,
    Int,
    List,
    Map,
    Struct,
)

F = Field
STRS = List(STR)
STR_SLICE = List(STR, go_name="strslice.StrSlice", or_single=True)
STR_MAP = Map(STR)
SET = Map(Empty(), go_name="map[string]struct {}")
#: Go [2]uint: a longer array is cut, a shorter one padded with zeros.
CONSOLE_SIZE = List(UINT32, go_name="[2]uint", length=2)

HEALTH_CONFIG = Struct(
    "container.HealthConfig",
    [
        F("Test", STRS),
        F("Interval", DURATION),
        F("Timeout", DURATION),
        F("StartPeriod", DURATION),
        F("StartInterval", DURATION),
        F("Retries", INT),
    ],
)

#: Config: what create takes besides HostConfig / NetworkingConfig.
CONFIG_FIELDS: list[Field] = [
    F("Hostname", STR),
    F("Domainname", STR),
    F("User", STR),
    F("AttachStdin", BOOL),
    F("AttachStdout", BOOL),
    F("AttachStderr", BOOL),
    F("ExposedPorts", Map(Empty(), go_name="nat.PortSet")),
    F("Tty", BOOL),
    F("OpenStdin", BOOL),
    F("StdinOnce", BOOL),
    F("Env", STRS),
    F("Cmd", STR_SLICE),
    F("Healthcheck", HEALTH_CONFIG),
    F("ArgsEscaped", BOOL),
    F("Image", STR),
    F("Volumes", SET),
    F("WorkingDir", STR),
    F("Entrypoint", STR_SLICE),
    F("NetworkDisabled", BOOL),
    F("MacAddress", STR),
    F("OnBuild", STRS),
    F("Labels", STR_MAP),
    F("StopSignal", STR),
    F("StopTimeout", INT, nullable=True),
    F("Shell", STR_SLICE),
]

_THROTTLE = List(
    Struct("blkiodev.ThrottleDevice", [F("Path", STR), F("Rate", UINT64)]),
)

#: container.Resources: embedded in HostConfig, and the body of an update.
RESOURCE_FIELDS: list[Field] = [
    F("CpuShares", INT64),
    F("Memory", INT64),
    F("NanoCpus", INT64),
    F("CgroupParent", STR),
    F("BlkioWeight", UINT16),
    F(
        "BlkioWeightDevice",
        List(Struct("blkiodev.WeightDevice", [F("Path", STR), F("Weight", UINT16)])),
    ),
    F("BlkioDeviceReadBps", _THROTTLE),
    F("BlkioDeviceWriteBps", _THROTTLE),
    F("BlkioDeviceReadIOps", _THROTTLE),
    F("BlkioDeviceWriteIOps", _THROTTLE),
    F("CpuPeriod", INT64),
    F("CpuQuota", INT64),
    F("CpuRealtimePeriod", INT64),
    F("CpuRealtimeRuntime", INT64),
    F("CpusetCpus", STR),
    F("CpusetMems", STR),
    F(
        "Devices",
        List(
            Struct(
                "container.DeviceMapping",
                [F("PathOnHost", STR), F("PathInContainer", STR), F("CgroupPermissions", STR)],
            )
        ),
    ),
    F("DeviceCgroupRules", STRS),
    F(
        "DeviceRequests",
        List(
            Struct(
                "container.DeviceRequest",
                [
                    F("Driver", STR),
                    F("Count", INT),
                    F("DeviceIDs", STRS),
                    F("Capabilities", List(STRS)),
                    F("Options", STR_MAP),
                ],
            )
        ),
    ),
    F("KernelMemory", INT64),
    F("KernelMemoryTCP", INT64),
    F("MemoryReservation", INT64),
    F("MemorySwap", INT64),
    F("MemorySwappiness", INT64, nullable=True),
    F("OomKillDisable", BOOL, nullable=True),
    F("PidsLimit", INT64, nullable=True),
    F(
        "Ulimits",
        List(Struct("units.Ulimit", [F("Name", STR), F("Hard", INT64), F("Soft", INT64)])),
    ),
    F("CpuCount", INT64),
    F("CpuPercent", INT64),
    F("IOMaximumIOps", UINT64),
    F("IOMaximumBandwidth", UINT64),
]

RESTART_POLICY = Struct("container.RestartPolicy", [F("Name", STR), F("MaximumRetryCount", INT)])

MOUNT = Struct(
    "mount.Mount",
    [
        F("Type", STR),
        F("Source", STR),
        F("Target", STR),
        F("ReadOnly", BOOL),
        F("Consistency", STR),
        F(
            "BindOptions",
            Struct(
                "mount.BindOptions",
                [
                    F("Propagation", STR),
                    F("NonRecursive", BOOL),
                    F("CreateMountpoint", BOOL),
                    F("ReadOnlyNonRecursive", BOOL),
                    F("ReadOnlyForceRecursive", BOOL),
                ],
            ),
        ),
        F(
            "VolumeOptions",
            Struct(
                "mount.VolumeOptions",
                [
                    F("NoCopy", BOOL),
                    F("Labels", STR_MAP),
                    F("Subpath", STR),
                    F(
                        "DriverConfig",
                        Struct("mount.Driver", [F("Name", STR), F("Options", STR_MAP)]),
                    ),
                ],
            ),
        ),
        F(
            "TmpfsOptions",
            Struct(
                "mount.TmpfsOptions",
                [F("SizeBytes", INT64), F("Mode", Int(go="os.FileMode", low=0, high=2**32 - 1))],
            ),
        ),
    ],
)

HOST_CONFIG_FIELDS: list[Field] = [
    F("Binds", STRS),
    F("ContainerIDFile", STR),
    F("LogConfig", Struct("container.LogConfig", [F("Type", STR), F("Config", STR_MAP)])),
    F("NetworkMode", STR),
    F(
        "PortBindings",
        Map(
            List(Struct("nat.PortBinding", [F("HostIp", STR), F("HostPort", STR)])),
            go_name="nat.PortMap",
        ),
    ),
    F("RestartPolicy", RESTART_POLICY),
    F("AutoRemove", BOOL),
    F("VolumeDriver", STR),
    F("VolumesFrom", STRS),
    F("ConsoleSize", CONSOLE_SIZE),
    F("Annotations", STR_MAP),
    F("CapAdd", STR_SLICE),
    F("CapDrop", STR_SLICE),
    F("CgroupnsMode", STR),
    F("Dns", STRS),
    F("DnsOptions", STRS),
    F("DnsSearch", STRS),
    F("ExtraHosts", STRS),
    F("GroupAdd", STRS),
    F("IpcMode", STR),
    F("Cgroup", STR),
    F("Links", STRS),
    F("OomScoreAdj", INT),
    F("PidMode", STR),
    F("Privileged", BOOL),
    F("PublishAllPorts", BOOL),
    F("ReadonlyRootfs", BOOL),
    F("SecurityOpt", STRS),
    F("StorageOpt", STR_MAP),
    F("Tmpfs", STR_MAP),
    F("UTSMode", STR),
    F("UsernsMode", STR),
    F("ShmSize", INT64),
    F("Sysctls", STR_MAP),
    F("Runtime", STR),
    F("Isolation", STR),
    *RESOURCE_FIELDS,
    F("Mounts", List(MOUNT)),
    F("MaskedPaths", STRS),
    F("ReadonlyPaths", STRS),
    F("Init", BOOL, nullable=True),
]

HOST_CONFIG = Struct("container.HostConfig", HOST_CONFIG_FIELDS)

ENDPOINT_SETTINGS = Struct(
    "network.EndpointSettings",
    [
        F(
            "IPAMConfig",
            Struct(
                "network.EndpointIPAMConfig",
                [F("IPv4Address", STR), F("IPv6Address", STR), F("LinkLocalIPs", STRS)],
            ),
        ),
        F("Links", STRS),
        F("Aliases", STRS),
        F("MacAddress", STR),
        F("DriverOpts", STR_MAP),
        F("NetworkID", STR),
        F("EndpointID", STR),
        F("Gateway", STR),
        F("IPAddress", STR),
        F("IPPrefixLen", INT),
        F("IPv6Gateway", STR),
        F("GlobalIPv6Address", STR),
        F("GlobalIPv6PrefixLen", INT),
        F("DNSNames", STRS),
    ],
)

NETWORKING_CONFIG = Struct(
    "network.NetworkingConfig", [F("EndpointsConfig", Map(ENDPOINT_SETTINGS))]
)

#: POST /containers/create
CREATE = Body(
    Struct(
        "ContainerConfigWrapper",
        [*CONFIG_FIELDS, F("HostConfig", HOST_CONFIG), F("NetworkingConfig", NETWORKING_CONFIG)],
    )
)

#: POST /commit (the new image's config)
COMMIT = Body(Struct("container.Config", CONFIG_FIELDS))

#: POST /containers/{id}/update (dockerd puts no "invalid JSON" before its errors there)
UPDATE = Body(
    Struct("container.UpdateConfig", [*RESOURCE_FIELDS, F("RestartPolicy", RESTART_POLICY)]),
    prefix="",
)

#: POST /containers/{id}/exec
EXEC_CREATE = Body(
    Struct(
        "types.ExecConfig",
        [
            F("User", STR),
            F("Privileged", BOOL),
            F("Tty", BOOL),
            F("ConsoleSize", CONSOLE_SIZE, nullable=True),
            F("AttachStdin", BOOL),
            F("AttachStderr", BOOL),
            F("AttachStdout", BOOL),
            F("Detach", BOOL),
            F("DetachKeys", STR),
            F("Env", STRS),
            F("WorkingDir", STR),
            F("Cmd", STR_SLICE),
        ],
    )
)

#: POST /exec/{id}/start
EXEC_START = Body(
    Struct(
        "types.ExecStartCheck",
        [
            F("Detach", BOOL),
            F("Tty", BOOL),
            F("ConsoleSize", CONSOLE_SIZE, nullable=True),
        ],
    )
)
