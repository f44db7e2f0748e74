"""Long work over a dataset, in the background or in batches: jobs, precompute and its engines.

- `manager`: background jobs (precompute, training) in their own process, which outlives the
  page and the app server: `JobManager`, the job specs, status files (`python -m medattn.jobs`).
- `worker`: the body of a job's process (`python -m medattn.jobs run FOLDER`).
- `batch`: the unit of work both engines run (`Job`, `score_batch`).
- `precompute`: maps and scores over a split (`python -m medattn.jobs.precompute`).
- `ray_engine`: the same batches on Ray actors (`precompute --engine ray`).

The modules import one way: precompute and ray_engine import batch, never each other; the
manager imports neither until a worker runs.
"""

from medattn.jobs.manager import (
    ACTIVE, STATES, JobManager, JobRunning, JobStatus, default_root, job_id, precompute_spec, train_spec,
)

__all__ = ["ACTIVE", "STATES", "JobManager", "JobRunning", "JobStatus", "default_root", "job_id",
           "precompute_spec", "train_spec"]
