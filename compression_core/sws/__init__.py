"""Soft weight-sharing (Ullrich, Meeds & Welling 2017; Nowlan & Hinton 1992): retraining with a learned
Gaussian-mixture prior over the weights, then pruning + quantization to the mixture's means.

`spec.py` (the spec field, torch-free), `prior.py` (the mixture, merging, assignment), `algorithm.py`
(`run_sws`), `job.py` (the pipeline hook). Import the submodules directly: `spec.py` imports this package.
"""
