"""Differential privacy on the peer send path and the accountant that reports epsilon."""
