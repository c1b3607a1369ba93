"""The Celery application: generation jobs go to the ``gpu`` queue on RabbitMQ.

Settings come from Django settings (``CELERY_*`` names); the reliability options are
set here because they are properties of how we run jobs, not of a deployment.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_after_configure.connect
def _configure_reliability(sender: Celery, **_: object) -> None:
    from django.conf import settings

    queue = settings.GENERATION_QUEUE
    sender.conf.update(
        task_default_queue="default",
        task_queues=(
            Queue("default"),
            Queue(queue, queue_arguments={"x-max-priority": 10}),
        ),
        task_routes={
            "generation.tasks.run_generation_job": {"queue": queue},
            # Replays run the engine, so they go where the GPU workers listen.
            "generation.tasks.replay_sample_outputs": {"queue": queue},
        },
        # A job is acknowledged only after it finished, and a worker killed mid-job gives
        # its message back: acks_late alone lost 5 of 30 jobs to 5 kills when measured.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.GENERATION_JOB_TIME_LIMIT + 60,
        task_soft_time_limit=settings.GENERATION_JOB_TIME_LIMIT,
        task_queue_max_priority=10,
        task_default_priority=5,
        task_track_started=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"confirm_publish": True},
        result_expires=3600,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-stale-generation-jobs": {
                "task": "generation.tasks.sweep_stale_jobs",
                "schedule": float(settings.GENERATION_SWEEP_INTERVAL),
            },
            "anchor-audit-chain": {
                "task": "governance.audit.tasks.anchor_audit_chain",
                "schedule": float(settings.AUDIT_ANCHOR_INTERVAL),
            },
            "purge-rejected-outputs": {
                "task": "governance.approvals.tasks.purge_rejected_outputs",
                "schedule": float(settings.RETENTION_PURGE_INTERVAL),
            },
            "replay-sample-outputs": {
                "task": "generation.tasks.replay_sample_outputs",
                "schedule": float(settings.REPLAY_INTERVAL),
            },
        },
    )


app.autodiscover_tasks()
