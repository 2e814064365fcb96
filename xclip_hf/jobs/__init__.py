"""Job infrastructure shared by embed, evaluate, training and deploy: processes, locks, shard stores, model identity."""

from .process import end_process_group, end_process_group_at_exit, job_state

__all__ = ["end_process_group", "end_process_group_at_exit", "job_state"]
