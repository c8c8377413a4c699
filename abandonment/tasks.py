"""Celery tasks of the abandonment emails: thin wrappers around the service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from abandonment import services


# acks_late + reject_on_worker_lost: a worker that dies mid-pass gets the message redelivered.
# That is safe because a pass is idempotent (claims, unique rows, keyed credits).
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_abandonment_pass(
    self, shard_index: int | None = None, shard_count: int | None = None
) -> dict[str, object]:
    """One pass of the abandonment job; returns its summary.

    Called without a shard (beat), it fans the pass out as ABANDONMENT_SHARDS shard tasks on
    the same queue when that is above 1, so the worker's processes share a large backlog.
    """
    if shard_index is None:
        count = settings.ABANDONMENT_SHARDS
        if count > 1:
            queue = (self.request.delivery_info or {}).get("routing_key")
            for index in range(count):
                run_abandonment_pass.apply_async(
                    kwargs={"shard_index": index, "shard_count": count}, queue=queue
                )
            return {"shards": count}
        shard_index, shard_count = 0, 1
    shard = services.Shard(shard_index, shard_count or 1)
    return services.run_abandonment(shard=shard).as_dict()
