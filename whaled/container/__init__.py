"""Containers: the record, its state machine, names, and the on-disk store."""
