from __future__ import annotations

from whaled.volume.model import ANONYMOUS_LABEL, Volume


def test_owner_round_trips_in_the_record() -> None:
    v = Volume(name="v", labels={ANONYMOUS_LABEL: ""}, owner="c" * 64)
    doc = v.to_json()
    assert doc["WhaledOwner"] == "c" * 64
    assert Volume.from_json(doc) == v


def test_a_volume_without_owner_keeps_its_old_record() -> None:
    v = Volume(name="v", labels={ANONYMOUS_LABEL: ""})
    assert "WhaledOwner" not in v.to_json()
    # records written before owners existed read as owner-less (never dropped at start)
    assert Volume.from_json({"Name": "v", "Labels": {ANONYMOUS_LABEL: ""}}).owner == ""
