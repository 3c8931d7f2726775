"""AMQP consumers: bank outcomes from the router and reconciliation, and the webhook fan-out.
Each handler writes its inbox row in the same transaction as its effect."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from contracts.payout import AttemptResolved, ReconPayoutResolved
from contracts.wire import Envelope
from services.kit import outbox
from services.kit.logging import get_logger
from services.payout.adapters import store
from services.payout.coordinator import post_return_transfer
from services.payout.domain import payouts as rules
from services.payout.domain import tcc
from services.payout.handlers import Context

log = get_logger(__name__)

ATTEMPTS_CONSUMER = "payout.attempt_outcomes"
RECON_CONSUMER = "payout.recon_outcomes"
OUTCOME_STATES = frozenset({tcc.SUBMITTING, tcc.AWAITING, tcc.PARKED})


async def on_attempt_resolved(ctx: Context, envelope: Envelope) -> None:
    try:
        event = msgspec.convert(envelope.data, AttemptResolved)
    except msgspec.ValidationError:
        log.error("attempt_resolved_invalid", event_id=envelope.event_id)
        return  # a malformed event can never succeed; dropping it is logged
    decision = tcc.CONFIRM if event.status == "succeeded" else tcc.CANCEL
    now = datetime.now(UTC)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await outbox.claim_inbox(conn, ATTEMPTS_CONSUMER, envelope.event_id):
            return
        await conn.execute(
            """UPDATE global_tx SET attempt_id = COALESCE($2, attempt_id),
                   channel_id = COALESCE($3, channel_id)
               WHERE payout_id = $1 AND decision IS NULL""",
            event.payout_id,
            event.attempt_id,
            event.channel_id,
        )
        result = await ctx.coordinator.decide_from_outside(
            conn,
            event.payout_id,
            decision,
            reason=event.failure_class or f"bank_{event.status}",
            allowed_states=OUTCOME_STATES,
            failure_code=event.failure_code if decision == tcc.CANCEL else None,
            failure_message=event.failure_message if decision == tcc.CANCEL else None,
        )
        if result == "conflict":
            await store.raise_alert(
                conn,
                code="outcome_conflict",
                severity="critical",
                message=f"attempt {event.attempt_id} {event.status} contradicts the decision"
                f" already taken for payout {event.payout_id}",
                payout_id=event.payout_id,
                now=now,
            )
    log.info(
        "attempt_outcome_applied",
        payout_id=event.payout_id,
        status=event.status,
        result=result,
    )


async def on_recon_resolved(ctx: Context, envelope: Envelope) -> None:
    try:
        event = msgspec.convert(envelope.data, ReconPayoutResolved)
    except msgspec.ValidationError:
        log.error("recon_resolved_invalid", event_id=envelope.event_id)
        return
    now = datetime.now(UTC)
    if event.outcome == "returned":
        tx = await ctx.pool.fetchrow(
            """SELECT g.state, p.status, p.merchant_id, p.amount_minor, p.currency
               FROM payouts p LEFT JOIN global_tx g ON g.payout_id = p.id WHERE p.id = $1""",
            event.payout_id,
        )
        if tx is not None and tx["status"] == rules.PAID:
            # Raises (→ redelivery) until the ledger has the reversing transfer.
            error = await post_return_transfer(ctx.ledger, event.payout_id, tx["merchant_id"], tx)
            if error is not None:
                raise RuntimeError(error)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await outbox.claim_inbox(conn, RECON_CONSUMER, envelope.event_id):
            return
        status = await conn.fetchval(
            "SELECT status FROM payouts WHERE id = $1 FOR UPDATE", event.payout_id
        )
        if status is None:
            log.warning("recon_outcome_unknown_payout", payout_id=event.payout_id)
            return
        if event.outcome == "returned" and status == rules.PAID:
            await store.change_status(
                conn, event.payout_id, rules.RETURNED, now=now, reason="returned_by_bank"
            )
            return
        if event.outcome == "returned" and status == rules.RETURNED:
            return
        decision = tcc.CANCEL if event.outcome == "failed" else tcc.CONFIRM
        result = await ctx.coordinator.decide_from_outside(
            conn,
            event.payout_id,
            decision,
            reason=f"reconciliation_{event.outcome}",
            allowed_states=OUTCOME_STATES,
            failure_code="bank_failed" if decision == tcc.CANCEL else None,
            failure_message=(
                "reported failed by the bank statement" if decision == tcc.CANCEL else None
            ),
            return_requested=event.outcome == "returned",
        )
        if result in ("conflict", "not_allowed") and status not in (rules.PAID, rules.FAILED):
            await store.raise_alert(
                conn,
                code="recon_outcome_conflict",
                severity="high",
                message=f"statement says {event.outcome} for payout {event.payout_id}"
                f" ({status}): not applied",
                payout_id=event.payout_id,
                now=now,
            )
        elif result == "conflict":
            await store.raise_alert(
                conn,
                code="recon_outcome_conflict",
                severity="critical",
                message=f"statement says {event.outcome} for payout {event.payout_id}"
                f" but it is {status}",
                payout_id=event.payout_id,
                now=now,
            )
    log.info("recon_outcome_applied", payout_id=event.payout_id, outcome=event.outcome)
