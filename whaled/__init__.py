"""whaled: a container engine daemon that speaks the Docker Engine API."""

__version__ = "0.1.0"
