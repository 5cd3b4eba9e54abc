from __future__ import annotations

from pathlib import Path

from whaled.osutil.readtext import read_text


def test_read_text(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"nameserver 10.0.0.2\n\xff")
    assert read_text(str(path)) == "nameserver 10.0.0.2\n\ufffd"
    assert read_text(str(tmp_path / "missing")) is None
    assert read_text(str(tmp_path)) is None  # a directory cannot be read
