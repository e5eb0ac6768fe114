"""Offline tools over a run directory: replay, audit, diagnostics, plotting, env check."""
