"""The audit trail's one signal, for apps that act on events (webhooks)."""

from django.dispatch import Signal

# Sent by ``audit_append`` with ``action`` (the dotted value) before it takes the chain
# head's lock, inside the caller's transaction. A receiver does its reads here and returns
# None, or a callable that ``audit_append`` calls with the saved event while the lock is
# held: only writes that need the event (its sequence) belong in that callable, so the lock
# is held as briefly as possible. A receiver that raises rolls the caller's write back.
audit_appending = Signal()
