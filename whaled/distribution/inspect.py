"""What ``GET /distribution/{name}/json`` reports: the descriptor of what a reference
names in its registry, and the platforms it offers (an index's entries, or the config's
platform for a single manifest), as dockerd's ``registry.DistributionInspect``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from whaled.distribution import manifest as mf
from whaled.distribution.client import RegistryClient
from whaled.distribution.errors import translate_pull_error
from whaled.distribution.platforms import Platform
from whaled.errors import WhaledError
from whaled.image.reference import Reference


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributionInspect:
    media_type: str
    digest: str
    size: int
    platforms: tuple[Platform, ...]


def inspect_manifest(client: RegistryClient, ref: Reference) -> DistributionInspect:
    """Fetch what ``ref`` (tagged or by digest) names; errors in dockerd's pull wording."""
    try:
        top = client.get_manifest(ref.path, ref.digest or ref.tag or "latest")
        parsed = mf.parse_manifest(top.body, top.media_type, reference=str(ref))
        if isinstance(parsed, mf.ImageIndex):
            platforms = tuple(d.platform for d in parsed.manifests if d.platform is not None)
        else:
            config = json.loads(client.read_blob(ref, parsed.config))
            platforms = (
                Platform(
                    os=str(config.get("os") or ""),
                    architecture=str(config.get("architecture") or ""),
                    variant=str(config.get("variant") or ""),
                ),
            )
    except WhaledError as e:
        raise translate_pull_error(
            e, familiar_name=ref.familiar_name, familiar_ref=ref.familiar
        ) from None
    return DistributionInspect(
        media_type=parsed.media_type,
        digest=top.digest,
        size=len(top.body),
        platforms=platforms,
    )
