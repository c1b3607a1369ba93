"""Auditor searches stay fast on a large trail: each search shape has an index that fits it.

A small table is read whole by PostgreSQL whatever the indexes, so these tests forbid
sequential scans and ask for the matching rows in no order (else the primary key's order
wins): the planner must then find them through an index. A search whose SQL stopped
matching its index (say, Django writing ``icontains`` differently) fails.
"""

import pytest
from django.db import connection, transaction

from governance.audit.services import audit_filter

pytestmark = pytest.mark.django_db


def _plan(events) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        return events.order_by().explain()


@pytest.mark.parametrize(
    ("needle", "index"),
    [("lighthouse", "audit_payload_trgm"), ("job-42", "audit_target_id_trgm")],
)
def test_text_search_reads_the_trigram_indexes_not_the_whole_trail(chain, needle, index):
    chain(5)

    plan = _plan(audit_filter(text=needle))

    assert index in plan
    assert "audit_actor_name_trgm" in plan
    assert "Seq Scan" not in plan


def test_search_by_username_walks_the_username_index_in_sequence_order(chain):
    chain(5)

    plan = _plan(audit_filter(actor="rita"))

    assert "audit_actor_name_seq" in plan
