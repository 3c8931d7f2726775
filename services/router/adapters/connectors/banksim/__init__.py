"""Connector for the bank simulator's API (docs/INTERFACES.md "Bank simulator")."""
