"""Container mounts: binds, tmpfs and ``--mount``; the volumes issue fills this package
(named volumes, ``--volumes-from``, volume drivers).

| module | what |
|---|---|
| ``mounts.py`` | ``Binds``/``Mounts``/``Tmpfs`` → runtime mounts; what a create may ask (pure) |
| ``sources.py`` | bind sources on the host: checked at create, created at start |
"""
