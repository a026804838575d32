"""Experiment analysis over the prediction log (docs/experiments.md)."""
