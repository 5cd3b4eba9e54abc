"""The NAT table's ruleset (pure)."""

from __future__ import annotations

from whaled.network.nat import BridgeNet, PortForward, ruleset, table_name


def test_table_names() -> None:
    assert table_name("/run/whaled") == "whaled"
    assert table_name("/run/whaled/") == "whaled"
    other = table_name("/tmp/wd-x/exec")
    assert other.startswith("whaled_") and other != table_name("/tmp/wd-y/exec")


def test_ruleset_masquerades_and_isolates() -> None:
    text = ruleset(
        "whaled",
        [
            BridgeNet(bridge="whaled0", subnet="172.17.0.0/16"),
            BridgeNet(bridge="wh-abc", subnet="10.1.0.0/24", internal=True),
        ],
    )
    lines = [ln.strip() for ln in text.splitlines()]
    # replaced as a whole, in one transaction
    assert lines[:3] == ["table ip whaled", "delete table ip whaled", "table ip whaled {"]
    assert 'ip saddr 172.17.0.0/16 oifname != "whaled0" masquerade' in lines
    assert not any("10.1.0.0/24" in ln and "masquerade" in ln for ln in lines)
    assert 'iifname "wh-abc" oifname != "wh-abc" drop' in lines
    assert 'oifname "wh-abc" iifname != "wh-abc" drop' in lines
    assert text.count("{") == text.count("}")


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines()]


def test_published_ports_are_dnat_rules() -> None:
    nets = [BridgeNet(bridge="wh-a", subnet="10.1.0.0/24")]
    forwards = [
        PortForward(proto="tcp", host_ip="0.0.0.0", host_port=8080, target_ip="10.1.0.2",
                    target_port=80),
        PortForward(proto="udp", host_ip="127.0.0.1", host_port=5353, target_ip="10.1.0.3",
                    target_port=53),
    ]  # fmt: skip
    proxied = _lines(ruleset("whaled", nets, forwards))
    assert "tcp dport 8080 dnat to 10.1.0.2:80" in proxied
    assert "ip daddr 127.0.0.1 udp dport 5353 dnat to 10.1.0.3:53" in proxied
    # from outside and from the host itself; loopback is the userland proxy's
    assert "fib daddr type local jump ports" in proxied
    assert "fib daddr type local ip daddr != 127.0.0.0/8 jump ports" in proxied
    # a container reaching a port of its own network through the host
    assert 'iifname "wh-a" oifname "wh-a" ct status dnat masquerade' in proxied
    assert not any("127.0.0.0/8" in ln and "masquerade" in ln for ln in proxied)

    direct = _lines(ruleset("whaled", nets, forwards, loopback_dnat=True))
    assert direct.count("fib daddr type local jump ports") == 2
    assert 'ip saddr 127.0.0.0/8 oifname "wh-a" masquerade' in direct
