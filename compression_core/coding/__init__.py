"""Entropy coding of integer streams: canonical Huffman, fixed-width packing and sparse positions."""

from compression_core.coding.huffman import entropy_bits

__all__ = ["entropy_bits"]
