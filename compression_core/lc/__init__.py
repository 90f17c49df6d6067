"""The LC (learning-compression) algorithm of Carreira-Perpiñán (2017), with per-layer mixed compression.

Model compression as constrained optimization: find weights w = Δ(Θ) that a compression type can express
(pruned to κ weights, a k-entry codebook, a low-rank factorization) and that keep the loss low. The penalty
method alternates

- the L step: a few epochs of SGD on  L(w) + μ/2 ||w - Δ(Θ) - λ/μ||²  (the data loss plus a quadratic pull
  towards the current compressed weights; λ are the Lagrange multipliers of the augmented Lagrangian), and
- the C step: Θ = Π(w - λ/μ), the direct compression of the shifted weights by each tensor's own rule
  (the library's prune / quantize / lowrank methods; low-rank selection uses the current μ),
- then λ ← λ - μ (w - Δ(Θ)),

while μ grows (μ_k = μ0 · a^k). The result is the last Δ(Θ), so the constraints hold exactly.

Modules: `spec` (the spec's `lc` field, torch-free), `cstep`, `lstep`, `algorithm` (the loop),
`job` (the pipeline hook). This package's `__init__` imports nothing heavy, because `compression_core.spec`
imports `compression_core.lc.spec`.
"""
