"""Backends that start a run: local processes, Ray actors, or everything in one process."""
