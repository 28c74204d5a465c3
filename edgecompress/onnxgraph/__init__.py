"""ONNX model I/O, checks, and analysis shared by every ONNX stage."""

from .io import input_specs, load_model, output_specs, save_model

__all__ = ["input_specs", "load_model", "output_specs", "save_model"]
