from pathlib import Path

from whaled.osutil.files import read_text


def test_reads_text_and_replaces_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"caf\xc3\xa9 \xff\n")
    assert read_text(str(path)) == "café \ufffd\n"


def test_missing_file_and_directory_give_none(tmp_path: Path) -> None:
    assert read_text(str(tmp_path / "missing")) is None
    assert read_text(str(tmp_path)) is None
