"""Risk controls for payouts: rule sets authored centrally, evaluated in memory (docs/RISK.md).

Pure domain: nothing here does I/O. The payout service stores rule-set documents, compiles
them with ``compile_ruleset``, holds an ``Engine``, calls ``evaluate`` before any hold and
``record`` after acceptance, and ``install``s newly published versions.
"""

from services.payout.risk.alerts import (
    LISTED_BENEFICIARY_BLOCKED,
    REVIEW_BURST,
    ReviewBurstPolicy,
    RiskAlert,
)
from services.payout.risk.document import Problem, RuleSetInvalid
from services.payout.risk.dryrun import Change, DryRunReport, dry_run
from services.payout.risk.engine import Engine, StaleRuleSet
from services.payout.risk.limits import RiskLimits
from services.payout.risk.model import (
    FAILURE_CODE_BLOCKED,
    Decision,
    FiredRule,
    HistoricalPayout,
    Outcome,
    PayoutFacts,
)
from services.payout.risk.ruleset import RuleSet, compile_ruleset

__all__ = [
    "FAILURE_CODE_BLOCKED",
    "LISTED_BENEFICIARY_BLOCKED",
    "REVIEW_BURST",
    "Change",
    "Decision",
    "DryRunReport",
    "Engine",
    "FiredRule",
    "HistoricalPayout",
    "Outcome",
    "PayoutFacts",
    "Problem",
    "ReviewBurstPolicy",
    "RiskAlert",
    "RiskLimits",
    "RuleSet",
    "RuleSetInvalid",
    "StaleRuleSet",
    "compile_ruleset",
    "dry_run",
]
