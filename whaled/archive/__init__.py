"""Every tar that enters or leaves whaled.

===================  ============================================================
``tarsafe``          safe unpacking of layer tars (whiteouts, no escapes), the
                     (decompressing) layer reader, tar rules
``tarstream``        lazy tar writing, one entry at a time; tar-split records that
                     rebuild a layer's original tar byte for byte
===================  ============================================================

Nothing here imports aiohttp; every call is synchronous (callers run them in a thread).
"""
