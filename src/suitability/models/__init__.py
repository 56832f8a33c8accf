"""Model training, evaluation and registry-independent model code."""
