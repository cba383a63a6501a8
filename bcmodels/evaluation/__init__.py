"""Metrics and intervals of trained models: one run, the repeated study, the cross-validation benchmark."""
