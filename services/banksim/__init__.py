"""Simulated banks: payout API, status inquiry, chaos controls and statement files."""
