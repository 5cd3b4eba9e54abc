"""Distribution: talking to registries (OCI distribution API) to pull and, later, push.

Where things live (one screen):

===================  ============================================================
``errors``           dockerd-worded errors: registry error codes, pull translation
``digest``           pure: OCI digests (sha256, sha512), parsing and hashing
``wire``             pure: HTTP requests/responses as values, registry error bodies
``auth``             pure: ``WWW-Authenticate`` challenges, ``X-Registry-Auth``,
                     token cache, the auth flow as a generator (sans-I/O)
``manifest``         pure: media types, manifest / index parsing and validation,
                     schema 1 refusal
``platforms``        pure: platform normalisation, host platform, index matching
``endpoints``        pure: insecure-registry decision, endpoints to try
``tls``              ``certs.d`` CAs and client certificates → ``ssl.SSLContext``
``compression``      streaming gzip / zstd / plain readers for layer blobs
``client``           ``RegistryClient``: ping, manifests, ``resolve``, blob streams
                     (verified, resumable), over ``http.client``
===================  ============================================================

May import ``whaled.image`` (references) and the base layers (config, host, osutil, errors);
never aiohttp, ``whaled.daemon``, ``whaled.runtime`` or ``whaled.logger`` (import-linter
contracts). Everything is synchronous; a daemon use case runs it in worker threads.
"""
