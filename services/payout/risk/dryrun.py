"""Dry run: what a candidate rule set would have decided on past payouts.

Replays the history in time order through fresh counters and the same ``evaluate_subject`` as
the live engine. Counters follow what really happened (a payout is recorded when it was
accepted at the time), not what the candidate would have done: the merchants' traffic is a
fact, the candidate's decisions are the question.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.payout.risk.counters import Counters, Subject
from services.payout.risk.evaluate import evaluate_subject
from services.payout.risk.model import Decision, HistoricalPayout, Outcome
from services.payout.risk.ruleset import RuleSet


@dataclass(frozen=True, slots=True)
class Change:
    payout_id: str
    merchant_id: str
    recorded_outcome: Outcome
    recorded_version: int | None
    candidate: Decision


@dataclass(slots=True)
class DryRunReport:
    candidate_version: int
    evaluated: int = 0
    changed: int = 0
    # "allow->block": n, for every transition seen (unchanged ones too, e.g. "allow->allow")
    transitions: Counter[str] = field(default_factory=Counter)
    # rule id → how many payouts it fired on under the candidate
    fired_by_rule: Counter[str] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)
    changes_truncated: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "candidate_version": self.candidate_version,
            "evaluated": self.evaluated,
            "changed": self.changed,
            "transitions": dict(sorted(self.transitions.items())),
            "fired_by_rule": dict(sorted(self.fired_by_rule.items())),
            "changes": [
                {
                    "payout_id": c.payout_id,
                    "merchant_id": c.merchant_id,
                    "recorded_outcome": c.recorded_outcome,
                    "recorded_version": c.recorded_version,
                    "candidate_outcome": c.candidate.outcome,
                    "fired": [f.rule_id for f in c.candidate.fired],
                }
                for c in self.changes
            ],
            "changes_truncated": self.changes_truncated,
        }


def dry_run(
    candidate: RuleSet,
    history: Iterable[HistoricalPayout],
    *,
    changes_max: int = 1_000,
    decisions: list[Decision] | None = None,
) -> DryRunReport:
    """Judge every past payout (oldest first) by ``candidate``; report what would change.

    ``decisions``, when given, receives every candidate decision in order (for tests and
    exports); the report itself keeps at most ``changes_max`` changed payouts.
    """
    counters = Counters(candidate.limits)
    report = DryRunReport(candidate_version=candidate.version)
    last_ms: int | None = None
    for past in history:
        subject = Subject.of(past.facts)
        if last_ms is not None and subject.at_ms < last_ms:
            raise ValueError(
                f"history must be in created_at order; {past.facts.payout_id} goes back in time"
            )
        last_ms = subject.at_ms
        decision = evaluate_subject(candidate, counters, past.facts, subject)
        if decisions is not None:
            decisions.append(decision)
        recorded: Outcome = past.recorded_outcome or "allow"
        report.evaluated += 1
        report.transitions[f"{recorded}->{decision.outcome}"] += 1
        for fired in decision.fired:
            report.fired_by_rule[fired.rule_id] += 1
        if decision.outcome != recorded:
            report.changed += 1
            if len(report.changes) < changes_max:
                report.changes.append(
                    Change(
                        payout_id=past.facts.payout_id,
                        merchant_id=past.facts.merchant_id,
                        recorded_outcome=recorded,
                        recorded_version=past.recorded_version,
                        candidate=decision,
                    )
                )
            else:
                report.changes_truncated = True
        if past.was_accepted:
            counters.record(subject)
    return report
