"""CUDA ops: CuPy arrays in, CuPy arrays out, one module per op family (same functions as
pyconvnet.ops). Importing these modules does not import CuPy."""
