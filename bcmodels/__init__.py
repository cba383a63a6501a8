"""Breast-ultrasound (BUSI) classification: the study's pipeline as a reusable package."""
