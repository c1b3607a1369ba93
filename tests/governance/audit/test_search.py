"""Auditors search the trail by actor, action, target, time and text, page by page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.audit.actions import AuditAction
from governance.audit.errors import AuditInvalid
from governance.audit.services import audit_search

pytestmark = pytest.mark.django_db


def _sequences(page):
    return [event.sequence for event in page.events]


def test_keyset_pages_walk_the_whole_trail_without_repeats(chain):
    chain(7)

    first = audit_search(limit=3)
    second = audit_search(limit=3, after_sequence=first.next_after_sequence)
    third = audit_search(limit=3, after_sequence=second.next_after_sequence)

    assert (_sequences(first), _sequences(second), _sequences(third)) == (
        [1, 2, 3],
        [4, 5, 6],
        [7],
    )
    assert third.next_after_sequence is None


def test_newest_first_pages_backwards(chain):
    chain(5)

    first = audit_search(limit=2, newest_first=True)
    second = audit_search(limit=2, newest_first=True, after_sequence=first.next_after_sequence)

    assert (_sequences(first), _sequences(second)) == ([5, 4], [3, 2])


def test_search_by_actor_as_user_id_or_username(append, requester, outsider):
    append(actor=requester)
    append(actor=outsider)
    append(actor=requester, action=AuditAction.JOB_CANCELLED)

    assert _sequences(audit_search(actor=requester)) == [1, 3]
    assert _sequences(audit_search(actor=outsider.pk)) == [2]
    assert _sequences(audit_search(actor="rita", action="job.cancelled")) == [3]


def test_search_by_target_and_time(append):
    append(target_type="output", target_id="abc")
    append(target_type="job", target_id="abc")
    now = timezone.now()

    assert _sequences(audit_search(target_type="output", target_id="abc")) == [1]
    assert _sequences(audit_search(since=now - timedelta(minutes=1))) == [1, 2]
    assert _sequences(audit_search(until=now - timedelta(minutes=1))) == []
    assert _sequences(audit_search(since=now.replace(tzinfo=None) + timedelta(hours=1))) == []


def test_text_search_looks_in_payload_target_and_username_ignoring_case(append, requester):
    append(payload={"caption": "A Red Square"})
    append(target_id="red-42", payload={})
    append(actor=requester, payload={})
    append(payload={"caption": "blue circle"})

    assert _sequences(audit_search(text="red")) == [1, 2]
    assert _sequences(audit_search(text="RITA")) == [3]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"action": "job.exploded"}, "action"),
        ({"after_sequence": -1}, "after_sequence"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_bad_search_arguments_name_the_field(arguments, field):
    with pytest.raises(AuditInvalid) as err:
        audit_search(**arguments)
    assert err.value.field == field
