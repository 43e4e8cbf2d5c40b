"""Device side: runs and describes .tflite and .onnx artifacts with numpy and one runtime.

Nothing under this package may import TensorFlow, tf_keras or Keras (a test enforces it).
"""
