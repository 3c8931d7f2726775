"""Smoke versions of the load runs."""
