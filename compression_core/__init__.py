"""Model compression library: pruning, weight sharing, low-rank and Huffman-coded artifacts.

Pure functions over tensors; no web, queue or database code lives here.
"""

__version__ = "0.1.0"
