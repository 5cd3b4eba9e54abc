"""Semantic validation of a decoded Config (pure, host facts injected)."""

from __future__ import annotations

import pytest

from whaled.config.model import AddressPool, Config, FrozenMap, RuntimeConfig, Ulimit
from whaled.config.validate import HostProbe, check_host, tls_paths, validate_config
from whaled.errors import ConfigError


def probe(
    executables: set[str] = frozenset(),
    files: set[str] = frozenset(),  # type: ignore[assignment]
    nofile: int = 20000,
    texts: dict[str, str] | None = None,
) -> HostProbe:
    return HostProbe(
        is_executable=lambda p: p in executables,
        which=lambda name: f"/usr/bin/{name}" if f"/usr/bin/{name}" in executables else None,
        is_file=lambda p: p in files or p in executables or p in (texts or {}),
        nofile_hard_limit=lambda: nofile,
        read_text=None if texts is None else texts.__getitem__,
    )


def test_defaults_are_valid() -> None:
    validate_config(Config())


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (Config(data_root="rel"), 'invalid value for "data-root": "rel" must be an absolute path'),
        (Config(labels=("nolabel",)), "bad attribute format: nolabel"),
        (Config(labels=("a=1", "a=2")), "conflict labels for a=1 and a=2"),
        (Config(max_concurrent_downloads=-1), "invalid max concurrent downloads: -1"),
        (Config(max_concurrent_uploads=-2), "invalid max concurrent uploads: -2"),
        (Config(max_download_attempts=0), "invalid max download attempts: 0"),
        (Config(registry_mirrors=("mirror.local",)), "invalid mirror: no scheme specified"),
        (Config(registry_mirrors=("ftp://m",)), 'invalid mirror: unsupported scheme "ftp"'),
        (Config(registry_mirrors=("https://m/path",)), "invalid mirror: path, query, or fragment"),
        (Config(insecure_registries=("http://r:5000",)), "should not contain '://'"),
        (Config(insecure_registries=("10.0.0.0/99",)), "is not a valid CIDR"),
        (Config(default_runtime="nope"), "specified default runtime 'nope' does not exist"),
        (
            Config(runtimes=FrozenMap({"runc": RuntimeConfig(path="/x")})),
            "runtime name 'runc' is reserved",
        ),
        (
            Config(runtimes=FrozenMap({"io.containerd.runc.v2": RuntimeConfig(path="/x")})),
            "runtime name 'io.containerd.runc.v2' is reserved",
        ),
        (
            Config(runtimes=FrozenMap({"x": RuntimeConfig()})),
            "runtime x: either a runtimeType or a path must be configured",
        ),
        (
            Config(runtimes=FrozenMap({"x": RuntimeConfig(runtime_type="io.containerd.kata.v2")})),
            "runtimeType is not supported",
        ),
        (
            Config(default_ulimits=FrozenMap({"nofile": Ulimit(name="nofile", soft=10, hard=5)})),
            "ulimit soft limit must be less than or equal to hard limit: 10 > 5",
        ),
        (
            Config(default_ulimits=FrozenMap({"bogus": Ulimit(name="bogus", soft=1, hard=1)})),
            "invalid ulimit type: bogus",
        ),
        (Config(storage_driver="btrfs"), 'storage driver "btrfs" is not supported'),
        (Config(log_driver="syslog"), "log driver 'syslog' is not supported"),
        (Config(log_opts=FrozenMap({"max-sz": "1m"})), "unknown log opt 'max-sz'"),
        (Config(log_opts=FrozenMap({"max-file": "0"})), "max-file cannot be less than 1"),
        (Config(exec_opts=("native.cgroupdriver=systemd",)), 'cgroup driver "systemd"'),
        (Config(exec_opts=("foo=bar",)), 'unknown exec-opt "foo"'),
        (Config(selinux_enabled=True), "SELinux is not supported"),
        (Config(userns_remap="default"), "userns-remap is not supported"),
        (Config(dns=("8.8.8.x",)), 'invalid value for "dns"'),
        (Config(bip="10.0.0.1/40"), 'invalid value for "bip"'),
        (
            Config(default_address_pools=(AddressPool(base="10.0.0.0/8", size=4),)),
            "invalid default-address-pools size 4",
        ),
        (Config(shutdown_timeout=-5), "invalid shutdown-timeout: -5"),
        (Config(hosts=("tcp://0.0.0.0:2375",)), "refusing to serve the API without TLS"),
        (Config(hosts=("tcp://10.1.2.3:2375",)), "refusing to serve the API without TLS"),
        # loopback too (dockerd 27+): local users and browser pages reach it
        (Config(hosts=("tcp://127.0.0.1:2375",)), "refusing to serve the API without TLS"),
        (
            Config(hosts=("tcp://localhost:2375", "unix:///tmp/x.sock")),
            "refusing to serve the API without TLS",
        ),
        (Config(hosts=("fd://",)), "fd:// is not supported"),
    ],
)
def test_invalid_configs(cfg: Config, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "cfg",
    [
        Config(hosts=("tcp://127.0.0.1:2375",), tls=False),  # explicitly insecure
        Config(hosts=("tcp://0.0.0.0:2375",), tls=False),
        Config(hosts=("tcp://0.0.0.0:2376",), tlsverify=True),
        Config(
            runtimes=FrozenMap({"custom": RuntimeConfig(path="/usr/sbin/runc")}),
            default_runtime="custom",
        ),
        Config(default_runtime="crun"),
        Config(insecure_registries=("myreg:5000", "10.0.0.0/8")),
        Config(registry_mirrors=("https://mirror.local/",)),
        Config(exec_opts=("native.cgroupdriver=cgroupfs",)),
        Config(log_opts=FrozenMap({"max-size": "10m", "max-file": "3"})),
    ],
)
def test_valid_configs(cfg: Config) -> None:
    validate_config(cfg)


def test_check_host_runtime_paths() -> None:
    cfg = Config(runtimes=FrozenMap({"c": RuntimeConfig(path="/opt/x")}))
    with pytest.raises(ConfigError, match='runtime c: path "/opt/x" is not an executable file'):
        check_host(cfg, probe())
    check_host(cfg, probe(executables={"/opt/x"}))
    by_name = Config(runtimes=FrozenMap({"c": RuntimeConfig(path="runc")}))
    check_host(by_name, probe(executables={"/usr/bin/runc"}))
    with pytest.raises(ConfigError):
        check_host(by_name, probe())


def test_check_host_tls_files() -> None:
    cfg = Config(tlsverify=True, tlscacert="/c/ca", tlscert="/c/cert", tlskey="/c/key")
    with pytest.raises(ConfigError, match="tlscert"):
        check_host(cfg, probe())
    check_host(cfg, probe(files={"/c/ca", "/c/cert", "/c/key"}))
    assert tls_paths(Config(), "/home/u") == (
        "/home/u/.docker/ca.pem",
        "/home/u/.docker/cert.pem",
        "/home/u/.docker/key.pem",
    )


def test_check_host_nofile_above_hard_limit() -> None:
    cfg = Config(default_ulimits=FrozenMap({"nofile": Ulimit(name="nofile", soft=1, hard=65536)}))
    with pytest.raises(ConfigError, match="exceeds this host's hard limit of 20000"):
        check_host(cfg, probe(nofile=20000))
    check_host(cfg, probe(nofile=1 << 20))


def test_check_host_default_crun_must_be_installed() -> None:
    with pytest.raises(ConfigError, match="default runtime crun is not installed on this host"):
        check_host(Config(default_runtime="crun"), probe())
    check_host(Config(default_runtime="crun"), probe(executables={"/usr/bin/crun"}))
    check_host(Config(default_runtime="runc"), probe())  # runc's absence shows elsewhere


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "cannot load it"),
        ("[]", "not a seccomp profile"),
        ('{"syscalls": []}', "not a seccomp profile"),
    ],
)
def test_a_seccomp_profile_that_cannot_load_is_refused_at_start(text: str, message: str) -> None:
    """Regression: whaled started with a broken seccomp-profile and then failed every
    container start (dockerd refuses to start)."""
    with pytest.raises(ConfigError, match=message):
        check_host(Config(seccomp_profile="/p.json"), probe(texts={"/p.json": text}))
    check_host(
        Config(seccomp_profile="/p.json"),
        probe(texts={"/p.json": '{"defaultAction": "SCMP_ACT_ALLOW"}'}),
    )
