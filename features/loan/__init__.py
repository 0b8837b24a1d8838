"""Loan interest-rate offers: price each application at the rate worth most in expectation."""

from features.loan.featureset import FEATURES, MODEL_INPUTS, RATE_FEATURE, LoanFeatureSet
from features.loan.lookups import MasterScale, RiskGrade, load_master_scale
from features.loan.pricing import PricingPolicy, Quote, best_rate, choose_rates, quote_row
from features.loan.schemas import CreditScoreUpdate, Engagement, LoanApplication, LoanOutcome

__all__ = [
    "FEATURES",
    "MODEL_INPUTS",
    "RATE_FEATURE",
    "CreditScoreUpdate",
    "Engagement",
    "LoanApplication",
    "LoanFeatureSet",
    "LoanOutcome",
    "MasterScale",
    "PricingPolicy",
    "Quote",
    "RiskGrade",
    "best_rate",
    "choose_rates",
    "load_master_scale",
    "quote_row",
]
