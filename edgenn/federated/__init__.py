"""Federated learning with on-device training, simulated on Flower's engine (``simulate.py``)."""
