"""Deployable models (issue 12): physical structured pruning with Torch-Pruning, `architecture.json` and
`load_model` (`compression_core.load_model`), ONNX export checked in onnxruntime, static int8 (onnxruntime
QDQ), deployment measurements and the preflight. This `__init__` imports nothing, so `deploy.spec` stays
cheap for the spec package (no torch, no import cycle).

- `spec.py`: the Torch-Pruning options of the `structured` step, `export`
- `pruning.py`: plan / refuse / apply / replay a Torch-Pruning plan
- `architecture.py`: `architecture.json` and `load_model(out_dir)`
- `onnx_export.py`, `int8.py`: `model.onnx`, `model.int8.onnx` (the `int8` method, methods/int8/), checks
- `measure.py`, `table.py`: errors, latency percentiles, peak memory; the seed-003 table
- `stage.py`: the job's deployment stage
- `preflight.py`, `check_report.py`: `mcs check` and `POST /jobs/validate`
"""
