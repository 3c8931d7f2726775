"""Limits of the risk engine: every memory and input size is bounded (tiger style)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Bounds shared by validation, the counters and the evaluator.

    A rule set is validated against these, so a published rule never asks the counters for
    more history than they keep (a velocity window longer than the horizon, a median over more
    samples than are kept, a cool-down longer than beneficiaries are remembered).
    """

    # Width of one counter bucket. Window edges are exact to this width.
    bucket_ms: int = 1_000
    # Longest velocity window a rule may use; counters keep this much history per key.
    velocity_horizon_s: int = 7 * 86_400
    # Keys kept per counter family (merchant, beneficiary, merchant+beneficiary).
    velocity_keys_max: int = 500_000
    # Non-empty buckets kept per key; past it the oldest buckets are folded into the next one
    # (events move later in time, so limits are over- rather than under-counted).
    velocity_buckets_per_key_max: int = 200_000
    # Recent amounts kept per merchant and currency for the median of the anomaly rule.
    anomaly_samples_max: int = 1_000
    anomaly_keys_max: int = 200_000
    # How long a (merchant, beneficiary) pair is remembered after its last payout, and how many.
    beneficiary_memory_s: int = 180 * 86_400
    beneficiary_keys_max: int = 2_000_000
    # Payout ids remembered so that recording the same payout twice counts it once.
    recorded_ids_max: int = 200_000
    # Rule-set document bounds.
    document_bytes_max: int = 8 * 1024 * 1024
    rules_max: int = 2_000
    list_values_max: int = 200_000
    merchants_max: int = 100_000

    def __post_init__(self) -> None:
        assert self.bucket_ms >= 1
        assert self.velocity_horizon_s * 1000 % self.bucket_ms == 0
        assert self.velocity_keys_max >= 1 and self.velocity_buckets_per_key_max >= 2
        assert self.anomaly_samples_max >= 1 and self.anomaly_keys_max >= 1
        assert self.beneficiary_memory_s >= 1 and self.beneficiary_keys_max >= 1
