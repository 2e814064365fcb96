"""Job infrastructure shared by the applications (embed, evaluate, training, deploy).

`process`: the life of a job's processes; `lock`: one writer per output; `store`: atomic shards, a done-list and
the job's config; `identity`: the model fingerprint every output records; `resumable`: the one start of a
resumable job (check, read what is done, record, split).
"""

from .process import end_process_group, end_process_group_at_exit, job_state

__all__ = ["end_process_group", "end_process_group_at_exit", "job_state"]
