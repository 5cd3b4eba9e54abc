"""The NAT table's ruleset (pure)."""

from __future__ import annotations

from whaled.network.nat import BridgeNet, ruleset, table_name


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
