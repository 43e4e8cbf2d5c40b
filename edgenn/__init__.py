"""edgenn: take trained Keras models to edge devices."""

__version__ = "0.1.0"
