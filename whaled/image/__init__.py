"""Image subsystem: references, content store, layer store (overlay2), image store, archives.

Where things live (one screen):

===================  ============================================================
``reference``        pure: docker reference parsing / normalisation / matching
``digests``          pure: sha256 helpers, chain IDs, short IDs
``content``          content-addressed blob store (``image/blobs/sha256/<hex>``)
``layers``           layer store: read-only layers by chain ID, overlay2 driver
``rwlayers``         read-write (container) layers: mount, changes, diff, size
``mounts``           the mount(2)/umount2(2) syscalls and /proc/mounts reading
``changes``          pure: Dockerfile-style ``changes`` (CMD, ENV, ...) for import/commit
``filters``          pure: list/prune filter evaluation, Go ``path.Match``, timestamps
``store``            image configs by ID + repositories (tags/digests) + delete planning
``archive``          docker-archive / OCI layout load and save, rootfs import
``stores``           ``ImageStores``: the stores above opened together over a data root
``views``            read-side views and the blocking list/inspect/history/df queries
``configs``          pure: target reference, platform, the config of a committed image
===================  ============================================================

The use cases (which store to call in what order, events) are in
``whaled.daemon.images.ImageService``. Nothing here imports aiohttp; every call is
synchronous (the daemon runs them in a worker thread) and thread-safe.
"""
