"""Concurrent appends from many connections all succeed and form one gapless chain."""

import threading

import pytest
from django.db import connection, transaction

from governance.audit.actions import AuditAction
from governance.audit.models import AuditEvent
from governance.audit.services import audit_append
from governance.audit.verification import audit_verify

THREADS = 8
APPENDS_PER_THREAD = 25


@pytest.mark.django_db(transaction=True)
def test_eight_threads_appending_at_once_all_succeed_in_one_gapless_valid_chain():
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            start.wait()
            for index in range(APPENDS_PER_THREAD):
                with transaction.atomic():
                    audit_append(
                        actor=None,
                        action=AuditAction.JOB_CREATED,
                        target_type="job",
                        target_id=f"{number}-{index}",
                        payload={"thread": number, "index": index},
                    )
        except BaseException as exc:  # reported below, with every other thread's result
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    total = THREADS * APPENDS_PER_THREAD
    assert list(AuditEvent.objects.values_list("sequence", flat=True)) == list(range(1, total + 1))
    assert AuditEvent.objects.values("target_id").distinct().count() == total
    result = audit_verify()
    assert result.ok, result.problems
    assert result.checked == total
