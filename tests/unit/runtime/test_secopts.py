from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.secopts import SecurityOptions, parse_security_opts


def test_empty() -> None:
    assert parse_security_opts([]) == SecurityOptions()


@pytest.mark.parametrize(
    ("opt", "nnp"),
    [
        ("no-new-privileges", True),
        ("no-new-privileges=true", True),
        ("no-new-privileges:true", True),
        ("no-new-privileges=false", False),
        ("no-new-privileges=1", True),
    ],
)
def test_no_new_privileges(opt: str, nnp: bool) -> None:
    assert parse_security_opts([opt]).no_new_privileges is nnp


def test_no_new_privileges_bad_value() -> None:
    with pytest.raises(
        InvalidParameter, match='invalid --security-opt 2: "no-new-privileges=maybe"'
    ):
        parse_security_opts(["no-new-privileges=maybe"])


def test_seccomp() -> None:
    assert parse_security_opts(["seccomp=unconfined"]).seccomp_profile == "unconfined"
    assert parse_security_opts(["seccomp:unconfined"]).seccomp_profile == "unconfined"
    profile = '{"defaultAction":"SCMP_ACT_ALLOW","x":"a=b:c"}'
    assert parse_security_opts([f"seccomp={profile}"]).seccomp_profile == profile
    assert parse_security_opts(["seccomp=builtin"]).seccomp_profile is None


def test_systempaths_unconfined() -> None:
    assert parse_security_opts(["systempaths=unconfined"]).unconfined_system_paths


@pytest.mark.parametrize("opt", ["apparmor=docker-default", "apparmor:myprofile"])
def test_apparmor_not_supported(opt: str) -> None:
    with pytest.raises(InvalidParameter, match="AppArmor is not supported on this host"):
        parse_security_opts([opt])


@pytest.mark.parametrize("opt", ["label=user:USER", "label=type:svirt_apache_t", "label=level:s0"])
def test_selinux_not_supported(opt: str) -> None:
    with pytest.raises(InvalidParameter, match="SELinux labels are not supported on this host"):
        parse_security_opts([opt])


def test_requests_for_no_confinement_are_accepted() -> None:
    assert parse_security_opts(["apparmor=unconfined", "label=disable"]) == SecurityOptions()
    # dockerd also takes the bare word (the label option's old short form)
    assert parse_security_opts(["disable", "label:disable"]) == SecurityOptions()


@pytest.mark.parametrize(("opt", "n"), [("bogus", 1), ("bogus=1", 2), ("seccomp=", 2)])
def test_malformed(opt: str, n: int) -> None:
    with pytest.raises(InvalidParameter, match=f'invalid --security-opt {n}: "{opt}"'):
        parse_security_opts([opt])
