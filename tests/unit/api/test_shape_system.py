"""/info's shaping of the daemon's proxy settings (pure)."""

from __future__ import annotations

from whaled.api.shape.system import proxy_fields
from whaled.config.model import Config, Proxies


def test_info_masks_proxy_credentials() -> None:
    """Regression: /info showed the proxies' passwords to every API client."""
    cfg = Config(
        proxies=Proxies(
            http_proxy="http://u:secret1@proxy:3128",
            https_proxy="u:secret2@proxy:3129",
            no_proxy="localhost,127.0.0.1",
        )
    )
    assert proxy_fields(cfg) == {
        "HttpProxy": "http://xxxxx:xxxxx@proxy:3128",
        "HttpsProxy": "xxxxx:xxxxx@proxy:3129",
        "NoProxy": "localhost,127.0.0.1",
    }
    assert proxy_fields(Config())["HttpProxy"] == ""
