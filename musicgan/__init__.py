"""musicgan: distributed GAN training for music on Ray.

A plain ``import musicgan`` loads no Ray: the model, loop, data codecs and metrics are pure
PyTorch/numpy; Ray glue lives in the modules that use it.
"""

__version__ = "0.1.0"
