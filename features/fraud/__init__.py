"""Payment fraud prevention: score card payments as they happen."""

from features.fraud.featureset import FraudFeatureSet
from features.fraud.lookups import CATEGORIES, Merchant
from features.fraud.schemas import FraudLabel, Payment

__all__ = ["CATEGORIES", "FraudFeatureSet", "FraudLabel", "Merchant", "Payment"]
