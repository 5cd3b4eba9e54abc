"""Container networking: network-mode rules and the per-container /etc files.

Today whaled has the modes ``none``, ``host`` and ``container:<id>``; ``default``/``bridge``
give a private network namespace with loopback only (``mode.py``). The networks issue fills
this package (bridge, IPAM, port publishing, DNS).

| module | what |
|---|---|
| ``mode.py`` | network-mode checks, the joined-container rule, default hostname (pure) |
| ``etcfiles.py`` | /etc/hostname, /etc/hosts, /etc/resolv.conf contents (pure) |
| ``files.py`` | writing those files for a container (reads the host's /etc/hosts, resolv.conf) |
"""
