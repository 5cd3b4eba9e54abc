"""Legacy links: parsing, the stored form, /etc/hosts lines and dockerd's variables."""

from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.network.links import (
    Link,
    hosts_line,
    link_env,
    parse_link,
    stored_link,
    without_link_env,
)


def test_parse_forms() -> None:
    assert parse_link("db:pg") == Link(child="db", alias="pg")
    assert parse_link("db") == Link(child="db", alias="db")
    assert parse_link("/db:/web/pg") == Link(child="db", alias="pg")  # as inspect shows it
    for bad in ("", ":x", "a/b:c"):
        with pytest.raises(InvalidParameter, match="should match template name:alias"):
            parse_link(bad)
    assert stored_link("db", "web", "pg") == "/db:/web/pg"


def test_hosts_line_names_alias_hostname_and_name() -> None:
    assert hosts_line("10.0.0.2", "pg", "abc123", "db") == "10.0.0.2\tpg abc123 db\n"
    assert hosts_line("10.0.0.2", "db", "abc123", "db") == "10.0.0.2\tdb abc123\n"


def test_link_env_as_dockerd_writes_it() -> None:
    env = link_env(
        parent_name="web",
        alias="my-db",
        ip="172.17.0.2",
        exposed_ports=["5432/tcp", "53/udp"],
        child_env=["PATH=/bin", "HOME=/root", "SECRET=a=b"],
    )
    assert env == [
        "MY_DB_PORT=udp://172.17.0.2:53",
        "MY_DB_PORT_53_UDP=udp://172.17.0.2:53",
        "MY_DB_PORT_53_UDP_ADDR=172.17.0.2",
        "MY_DB_PORT_53_UDP_PORT=53",
        "MY_DB_PORT_53_UDP_PROTO=udp",
        "MY_DB_PORT_5432_TCP=tcp://172.17.0.2:5432",
        "MY_DB_PORT_5432_TCP_ADDR=172.17.0.2",
        "MY_DB_PORT_5432_TCP_PORT=5432",
        "MY_DB_PORT_5432_TCP_PROTO=tcp",
        "MY_DB_NAME=/web/my-db",
        "MY_DB_ENV_SECRET=a=b",
    ]
    assert link_env(parent_name="w", alias="x", ip="1.2.3.4", exposed_ports=[], child_env=[]) == [
        "X_NAME=/w/x"
    ]


def test_removing_a_link_keeps_another_with_a_longer_alias() -> None:
    env = ["DB_NAME=/w/db", "DB_PORT=tcp://1.2.3.4:5", "DB_X_NAME=/w/db-x", "OTHER=1"]
    assert without_link_env(env, "db", ["db-x"]) == ["DB_X_NAME=/w/db-x", "OTHER=1"]
    assert without_link_env(env, "db-x", ["db"]) == [*env[:2], "OTHER=1"]
