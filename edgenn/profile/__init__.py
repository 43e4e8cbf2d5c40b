"""DEVICE SIDE: latency and memory measurement. No TensorFlow imports here (a test enforces it)."""
