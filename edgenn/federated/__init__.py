"""Federated learning with on-device training (issue 6): the trainable TFLite export so far."""
