"""Degradations for training and evaluation: the training mixture and the frozen evaluation bands."""
