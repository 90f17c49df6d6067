"""Search jobs: grid sweeps with Pareto fronts, the most compressed model within an error budget, and
per-layer sensitivity. A whole-model method: the spec's `search` field runs the rest of the spec many times
with numeric fields varied by path.

- spec.py: the `search` field; paths.py: fields by path and the up-front check of every trial;
- planner.py (+ sensitivity.py): which trials next; trial.py: one trial, chosen on a validation split
  (validation.py) and reported on the test split; pareto.py, results.py: the outcome and its files;
- driver.py: the search as an outer method (`methods/outer.py`): the library runs its trials one after
  another (`job/outer.py`, `mcs compress`), the service fans them out as child jobs over the workers
  (worker/search.py); run.py: `finalize`, the outcome both assemble.
"""

from compression_core.methods.outer import OuterMethod
from compression_core.methods.search.spec import SearchSpec

METHOD = OuterMethod(spec=SearchSpec, driver="compression_core.methods.search.driver:SearchDriver")
