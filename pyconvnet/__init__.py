"""pyconvnet: cuda-convnet rebuilt for today's GPUs and Python 3."""
__version__ = "0.1.0"
