"""Helpers of bench/real_models.py: ONNX Runtime's quantizers and edgecompress's CLI as a user runs them
(variants.py), compare hints and data subsets (zoo_io.py), tables and the results files (report.py)."""
