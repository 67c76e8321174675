"""Template tags that show a resource's Personalize ARN with a copy button.

    {% load personalize_arns %}
    {% arn_copy "campaign" project campaign.name %}

renders ``templates/feeds/_arn.html``: the ARN (``feeds.personalize.arns.arn_for``) in a
``<code>`` and a button that copies it (static/js/copy.js, loaded by the page).
"""

import hashlib
import re

from django import template

from feeds.personalize import arns, events

register = template.Library()


@register.inclusion_tag("feeds/_arn.html")
def arn_copy(kind, project, name, label="ARN"):
    arn = arns.arn_for(kind, project, name)
    # Split after ":" and "/" so a narrow card wraps the ARN there (<wbr> in the template).
    parts = re.findall(r"[^:/]*[:/]?", arn)
    return {"parts": [p for p in parts if p], "dom_id": _dom_id(arn), "kind": kind, "label": label}


@register.simple_tag
def event_tracker(project) -> dict:
    """The project's event tracker: its name, ARN and tracking id (for PutEvents)."""
    return {
        "name": events.EVENT_TRACKER_NAME,
        "arn": events.event_tracker_arn(project),
        "tracking_id": events.tracking_id(project),
    }


def _dom_id(arn: str) -> str:
    return "arn-" + hashlib.sha256(arn.encode()).hexdigest()[:12]
