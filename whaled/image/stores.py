"""The image subsystem's stores, opened together over one data root.

``open_image_stores`` builds the content store, the layer store (overlay2), the image store
and the archive loader, and drops the layers no image references (start-up maintenance, as
``ContainerStore.load_all`` empties the container trash). Blocking; the daemon runs it in a
worker thread at start and hands the result to the services that need it (the image use
cases in ``whaled.daemon.images``, the container service for image lookups and read-write
layers).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from whaled.image.archive import Loader
from whaled.image.content import ContentStore
from whaled.image.distmeta import DistributionMetadata
from whaled.image.layers import LayerStore
from whaled.image.store import Image, ImageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageStores:
    content: ContentStore
    layers: LayerStore
    images: ImageStore
    loader: Loader
    distribution: DistributionMetadata

    def resolve(self, ref_or_id: str) -> Image:
        """Image by full ID, reference (``busybox`` means ``:latest``) or ID prefix."""
        return self.images.resolve(ref_or_id)


def open_image_stores(data_root: str, *, fsync_blobs: bool = True) -> ImageStores:
    os.makedirs(data_root, exist_ok=True)
    content = ContentStore(data_root)
    layers = LayerStore(data_root, content, fsync_blobs=fsync_blobs)
    images = ImageStore(data_root, layers)
    for layer in layers.gc():
        log.info("removed unreferenced layer %s", layer.chain_id)
    return ImageStores(
        content=content,
        layers=layers,
        images=images,
        loader=Loader(data_root, images, layers),
        distribution=DistributionMetadata(data_root),
    )
