"""Exporters: tf_keras model -> .tflite (and, with issue 4, .onnx)."""
