"""The evaluator: one payout, one compiled rule set, the counters → a Decision.

Pure and synchronous: it reads the rule set and the counters and writes nothing, so the live
engine and the dry run call this same function. Cost is bounded by the rule count with no I/O;
the loops below are written for CPython speed (locals, no per-rule calls in the common case)
because this runs on the payout hot path (bench/risk.py).
"""

from __future__ import annotations

from services.payout.risk.counters import Counters, Subject
from services.payout.risk.model import (
    FAILURE_CODE_BLOCKED,
    OUTCOMES,
    Decision,
    FiredRule,
    PayoutFacts,
)
from services.payout.risk.ruleset import AnomalyRule, CompiledRule, RuleSet

_FIELDS = ("account", "bank", "name")


def evaluate(ruleset: RuleSet, counters: Counters, facts: PayoutFacts) -> Decision:
    return evaluate_subject(ruleset, counters, facts, Subject.of(facts))


def _applies(rule: CompiledRule, subject: Subject) -> bool:
    """Currency filter and allowlist exemption (only called for rules that have one)."""
    if rule.currency is not None and rule.currency != subject.currency:
        return False
    exempt = rule.exempt
    return exempt is None or subject.keys[exempt[0]] not in exempt[1]


def evaluate_subject(
    ruleset: RuleSet, counters: Counters, facts: PayoutFacts, subject: Subject
) -> Decision:
    plan = ruleset.plan_for(subject.merchant_id)
    fired: list[FiredRule] = []
    severity = 0
    keys = subject.keys
    amount = subject.amount_minor
    currency = subject.currency

    for field, index in enumerate(ruleset.blocked):
        hits = index.get(keys[field])
        if hits:
            for rule in hits:
                if id(rule) in plan.blocklist_ids and (
                    rule.unconditional or _applies(rule, subject)
                ):
                    fired.append(rule.fired(f"beneficiary {_FIELDS[field]} is on the blocklist"))
                    if rule.severity > severity:
                        severity = rule.severity

    for rule in plan.allowlists:
        if keys[rule.field] not in rule.values and (rule.unconditional or _applies(rule, subject)):
            fired.append(rule.fired(f"beneficiary {_FIELDS[rule.field]} is not on the allowlist"))
            if rule.severity > severity:
                severity = rule.severity

    if plan.velocity:
        now_bucket = subject.at_ms // counters.bucket_ms
        for group in plan.velocity:
            series_currency = group.series_currency
            if series_currency != "*" and series_currency != currency:
                continue
            series = counters.series(group.scope, subject, series_currency)
            # Everything the key holds bounds every window: when even that plus this payout is
            # under a window's lowest limits, the window needs no search.
            if series is None:
                kept_count, kept_amount = 1, amount
            else:
                kept_count, kept_amount = series.totals()
                kept_count += 1
                kept_amount += amount
            for window in group.windows:
                if kept_count <= window.count_floor and kept_amount <= window.amount_floor:
                    continue
                if series is None:
                    count, total = 1, amount  # this payout alone
                else:
                    count, total = series.since(now_bucket - window.buckets + 1)
                    count += 1
                    total += amount
                    if count <= window.count_floor and total <= window.amount_floor:
                        continue
                for vr in window.rules:
                    max_count = vr.max_count
                    max_amount = vr.max_amount_minor
                    if max_count is not None and count > max_count:
                        detail = (
                            f"{count} payouts per {group.scope} in {vr.window_s}s (max {max_count})"
                        )
                        reason = vr.reason_code or "velocity_count_exceeded"
                    elif max_amount is not None and total > max_amount:
                        detail = (
                            f"{total} {currency} minor units per {group.scope} in "
                            f"{vr.window_s}s (max {max_amount})"
                        )
                        reason = vr.reason_code or "velocity_amount_exceeded"
                    else:
                        continue
                    if vr.exempt is None or _applies(vr, subject):
                        fired.append(vr.fired(detail, reason))
                        if vr.severity > severity:
                            severity = vr.severity

    if plan.anomaly:
        samples, median2 = counters.median_twice(subject.merchant_id, currency)
        floor_num, floor_den, floor_samples = plan.anomaly_floor
        if samples < floor_samples or 2 * amount * floor_den <= floor_num * median2:
            anomalies: tuple[AnomalyRule, ...] = ()  # not over even the smallest multiple
        else:
            anomalies = plan.anomaly
        for ar in anomalies:
            if (
                samples >= ar.min_samples
                # amount > multiple * median, kept in integers: 2*amount*den > num*(2*median)
                and 2 * amount * ar.multiple_den > ar.multiple_num * median2
                and (ar.min_amount_minor is None or amount >= ar.min_amount_minor)
                and (ar.unconditional or _applies(ar, subject))
            ):
                fired.append(
                    ar.fired(
                        f"amount {amount} is over {ar.multiple_text}x the median "
                        f"{median2 / 2:g} of the last {samples} payouts"
                    )
                )
                if ar.severity > severity:
                    severity = ar.severity

    if plan.cooldown:
        first_ms = counters.first_seen_ms(subject.merchant_id, subject.beneficiary)
        age_ms = None if first_ms is None else subject.at_ms - first_ms
        new_to_some = age_ms is None or age_ms < plan.cooldown_ms_max
        for cr in plan.cooldown if new_to_some else ():
            if (
                (age_ms is None or age_ms < cr.cooldown_ms)
                and (cr.min_amount_minor is None or amount >= cr.min_amount_minor)
                and (cr.unconditional or _applies(cr, subject))
            ):
                seen = "first payout" if age_ms is None else f"first paid {age_ms // 1000}s ago"
                fired.append(cr.fired(f"new beneficiary ({seen}; cool-down {cr.cooldown_s}s)"))
                if cr.severity > severity:
                    severity = cr.severity

    for tgroup in plan.time:
        local = facts.created_at.astimezone(tgroup.zone)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        for tr in tgroup.rules:
            if tr.start_min < tr.end_min:
                inside = tr.start_min <= minute < tr.end_min
            else:  # crosses midnight
                inside = minute >= tr.start_min or minute < tr.end_min
            inside = inside and day in tr.days
            if inside == tr.fires_inside and (tr.unconditional or _applies(tr, subject)):
                where = "inside" if inside else "outside"
                fired.append(tr.fired(f"{local:%a %H:%M} is {where} {tr.window_text}"))
                if tr.severity > severity:
                    severity = tr.severity

    outcome = OUTCOMES[severity]
    return Decision(
        outcome=outcome,
        ruleset_version=ruleset.version,
        fired=tuple(fired),
        failure_code=FAILURE_CODE_BLOCKED if outcome == "block" else None,
    )
