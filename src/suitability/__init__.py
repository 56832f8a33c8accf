"""suitability: know your investor — risk category, churn risk and product suitability."""

__version__ = "0.1.0"
