"""Explanations: SHAP contributions, reason codes, reports."""
