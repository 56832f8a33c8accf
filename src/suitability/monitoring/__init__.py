"""Drift and performance monitoring of registered models against the reference recorded when they
were trained (DESIGN §6): thresholds, reference, drift, realised performance, result, report."""
