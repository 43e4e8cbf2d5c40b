"""Compression recipes, applied step by step (``pipeline.py``).

One module per technique in ``techniques/``, each registering itself by its recipe key.
"""
