"""Real pretrained models and real data for edgecompress's fidelity claims, prepared offline into a cache.

`python bench/zoo/prepare.py` builds the cache; `from bench.zoo.prepare import prepare, load_zoo` uses it.
See docs/zoo.md. This package imports nothing heavy: the modules load torch / onnx / skimage on use.
"""
