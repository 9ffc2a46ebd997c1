"""smapx workers: the Celery app and its tasks, thin wrappers over model/."""
