"""Fault injection while traffic runs, then every money invariant checked."""
