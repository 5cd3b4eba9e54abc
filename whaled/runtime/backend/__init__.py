"""Backend that runs containers: the interface the daemon keeps (``api``) and the local
implementation over one ``conmon`` per container (``conmon``, with pure argv builders in
``conmon_args``)."""
