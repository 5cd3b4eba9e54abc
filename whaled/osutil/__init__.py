"""Small OS helpers (files, processes, mounts) shared by the domain packages."""
