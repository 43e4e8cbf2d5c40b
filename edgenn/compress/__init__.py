"""Compression techniques. Each registers itself by its recipe key (see ``registry``)."""
