"""TLS settings of a registry from ``certs.d`` directories (file reads only).

dockerd's layout: ``<certs.d>/<host[:port]>/`` holds ``*.crt`` files (CAs trusted for that
registry, on top of the system's) and client certificate pairs ``<name>.cert`` +
``<name>.key``. A ``.cert`` without its ``.key`` (or the reverse) is an error, worded as
dockerd words it. Several certs.d directories may be given (whaled's own, then
``/etc/docker/certs.d``); every one that has a folder for the host contributes.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from whaled.errors import InvalidParameter


@dataclass(frozen=True, slots=True, kw_only=True)
class HostCerts:
    ca_files: tuple[str, ...] = ()
    client_pairs: tuple[tuple[str, str], ...] = field(default=())  # (cert, key)


def read_certs_dirs(certs_dirs: Sequence[str], host: str) -> HostCerts:
    """The CA files and client pairs for ``host`` (``name[:port]``) in ``certs_dirs``."""
    cas: list[str] = []
    pairs: list[tuple[str, str]] = []
    for base in certs_dirs:
        folder = os.path.join(base, host)
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            raise InvalidParameter(f"unable to read certificates in {folder}: {e}") from None
        present = set(names)
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".crt"):
                cas.append(path)
            elif name.endswith(".cert"):
                key = name[: -len(".cert")] + ".key"
                if key not in present:
                    raise InvalidParameter(
                        f"missing key {key} for client certificate {name}. CA certificates "
                        "must use the extension .crt"
                    )
                pairs.append((path, os.path.join(folder, key)))
            elif name.endswith(".key"):
                cert = name[: -len(".key")] + ".cert"
                if cert not in present:
                    raise InvalidParameter(f"missing client certificate {cert} for key {name}")
    return HostCerts(ca_files=tuple(cas), client_pairs=tuple(pairs))


def ssl_context(certs: HostCerts, *, verify: bool) -> ssl.SSLContext:
    """A client context: system CAs plus the host's; no verification when ``verify`` is
    false (an insecure registry); the first client pair presented if there is one."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        for ca in certs.ca_files:
            try:
                ctx.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as e:
                raise InvalidParameter(f"unable to load CA certificate {ca}: {e}") from None
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for cert, key in certs.client_pairs[:1]:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise InvalidParameter(f"unable to load client certificate {cert}: {e}") from None
    return ctx
