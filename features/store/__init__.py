"""Store-waste reduction: forecast tomorrow's demand per store and product, order and mark down."""

from features.store.featureset import FEATURES, StoreFeatureSet
from features.store.lookups import CATEGORIES, Product, Store, load_products, load_stores
from features.store.schemas import DayClose, Delivery, PriceChange, Sale, StockCount

__all__ = [
    "CATEGORIES",
    "FEATURES",
    "DayClose",
    "Delivery",
    "PriceChange",
    "Product",
    "Sale",
    "StockCount",
    "Store",
    "StoreFeatureSet",
    "load_products",
    "load_stores",
]
