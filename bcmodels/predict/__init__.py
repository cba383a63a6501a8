"""Classify new images with trained checkpoints: `python -m bcmodels.predict` (bcmodels.predict.command)."""
