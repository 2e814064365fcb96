"""Job infrastructure shared by the applications (embed, evaluate, training): the life of a job's processes."""

from .process import end_process_group, end_process_group_at_exit, job_state

__all__ = ["end_process_group", "end_process_group_at_exit", "job_state"]
