"""The pass/fail rules of a load run, as a pure function of what the run observed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    paid_share_min: float = 0.999  # of accepted payouts
    p99_ms_max: float = 2_000.0  # merchant API, all requests together
    http_5xx_max: int = 0
    double_executions_max: int = 0


@dataclass
class Observed:
    accepted: int
    statuses: dict[str, int]
    api_p99_ms: float
    http_5xx: int
    double_executions: list[str] = field(default_factory=list)  # evidence: payout -> refs
    paid_without_webhook: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    idempotency_violations: int = 0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def evaluate(observed: Observed, limits: Limits) -> list[Check]:
    paid = observed.statuses.get("paid", 0)
    share = paid / observed.accepted if observed.accepted else 0.0
    not_paid = {s: n for s, n in observed.statuses.items() if s != "paid" and n}
    return [
        Check(
            "accepted payouts end paid",
            observed.accepted > 0 and share >= limits.paid_share_min,
            f"{paid}/{observed.accepted} = {share:.4%} (min {limits.paid_share_min:.1%});"
            f" others {not_paid}",
        ),
        Check(
            "API p99",
            observed.api_p99_ms <= limits.p99_ms_max,
            f"{observed.api_p99_ms:.0f} ms (max {limits.p99_ms_max:.0f} ms)",
        ),
        Check(
            "no 5xx",
            observed.http_5xx <= limits.http_5xx_max,
            f"{observed.http_5xx} (max {limits.http_5xx_max})",
        ),
        Check(
            "no double execution at any bank",
            len(observed.double_executions) <= limits.double_executions_max,
            f"{len(observed.double_executions)} {observed.double_executions[:10]}",
        ),
        Check(
            "every paid payout's webhook delivered and verified",
            not observed.paid_without_webhook and observed.bad_signatures == 0,
            f"missing {len(observed.paid_without_webhook)} {observed.paid_without_webhook[:10]},"
            f" bad signatures {observed.bad_signatures}",
        ),
        Check(
            "same Idempotency-Key, same payout",
            observed.idempotency_violations == 0,
            f"{observed.idempotency_violations} violations",
        ),
    ]
