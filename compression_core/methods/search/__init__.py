"""Search jobs: grid sweeps with Pareto fronts, the most compressed model within an error budget, and
per-layer sensitivity. A whole-model method: the spec's `search` field runs the rest of the spec many times
with numeric fields varied by path.

- spec.py: the `search` field; paths.py: fields by path and the up-front check of every trial;
- planner.py (+ sensitivity.py): which trials next; trial.py: one trial, chosen on a validation split
  (validation.py) and reported on the test split; pareto.py, results.py: the outcome and its files;
- run.py: the whole search in this process, one trial after another (the library and `mcs compress`);
  the service runs the same planner with each trial a child job over the workers (worker/search.py).
"""

from compression_core.methods.base import ModelMethod
from compression_core.methods.search.spec import SearchSpec

METHOD = ModelMethod(spec=SearchSpec, run="compression_core.methods.search.run:run_search")
