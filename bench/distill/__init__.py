"""Distillation: a KD method is data sources × loss terms (see `methods`)."""
