"""Signals of the data stores."""

from django.dispatch import Signal

# Sent in the writing process after the transaction that changed events commits:
# ``project_id`` and ``user_ids`` (internal EndUser ids; None: every user of the project).
# Other processes learn it by PostgreSQL NOTIFY (datasets/store.py).
events_changed = Signal()
