from __future__ import annotations

import re
from pathlib import Path

import pytest

from whaled.distribution.tls import HostCerts, read_certs_dirs
from whaled.errors import InvalidParameter


def test_reads_cas_and_pairs_from_every_dir(tmp_path: Path) -> None:
    a = tmp_path / "a" / "h:5000"
    b = tmp_path / "b" / "h:5000"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "ca.crt").write_text("x")
    (b / "other.crt").write_text("x")
    (b / "client.cert").write_text("x")
    (b / "client.key").write_text("x")
    (b / "README").write_text("ignored")
    certs = read_certs_dirs([str(tmp_path / "a"), str(tmp_path / "missing"), str(tmp_path / "b")],
                            "h:5000")  # fmt: skip
    assert certs == HostCerts(
        ca_files=(str(a / "ca.crt"), str(b / "other.crt")),
        client_pairs=((str(b / "client.cert"), str(b / "client.key")),),
    )
    assert read_certs_dirs([str(tmp_path / "a")], "other:5000") == HostCerts()


def test_key_without_cert_and_cert_without_key_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "certs.d" / "h:5000"
    folder.mkdir(parents=True)
    (folder / "client.key").write_text("x")
    with pytest.raises(InvalidParameter, match=re.escape("missing client certificate client.cert")):
        read_certs_dirs([str(tmp_path / "certs.d")], "h:5000")
    (folder / "client.key").unlink()
    (folder / "client.cert").write_text("x")
    with pytest.raises(
        InvalidParameter, match=re.escape("missing key client.key for client certificate")
    ):
        read_certs_dirs([str(tmp_path / "certs.d")], "h:5000")
