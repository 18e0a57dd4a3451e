"""The blendshape network: PyTorch definition (``model``, torch only), ONNX export (``export``),
the onnxruntime runner (``runner``, numpy + onnxruntime only) and the shipped weights (``weights/``).

Importing this package imports neither torch nor onnxruntime.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_MODEL = WEIGHTS_DIR / "blendshapes.onnx"
SHIPPED_MODEL_INT8 = WEIGHTS_DIR / "blendshapes.int8.onnx"
