"""Figures, contact sheets and markdown tables, shared by the reports."""
