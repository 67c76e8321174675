"""ARNs of a project's resources, in the format the Personalize APIs take.

    arn:aws:personalize:local:<project slug>:<kind>/<name>

- the *account* field is the project's **slug** (unique, fixed when the project is created,
  and readable in logs), the *region* is ``local`` (any region is accepted when resolving);
- ``<kind>`` is one of KINDS (``campaign``, ``filter``, ``dataset``, ``event-tracker``, ...)
  and ``<name>`` the resource's name in recsite (a campaign's or saved filter's name, a
  dataset's kind, ...; it may contain ``/``).

An ARN resolves only inside the caller's project: an ARN naming another project answers
``ResourceNotFoundException`` exactly as an unknown name does, so a key of one project
cannot learn whether another project's resource exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from feeds.personalize.errors import InvalidInput, ResourceNotFound

PARTITION = "aws"
SERVICE = "personalize"
REGION = "local"
KINDS = (
    "campaign",
    "filter",
    "dataset",
    "dataset-group",
    "event-tracker",
    "recommender",
    "solution",
)
MAX_LENGTH = 256  # the service model's Arn shape

_ARN = re.compile(
    r"^arn:(?P<partition>[a-z0-9-]+):personalize:(?P<region>[^:]*):(?P<account>[^:]+):"
    r"(?P<kind>[a-z-]+)/(?P<name>.+)$"
)


@dataclass(frozen=True)
class Arn:
    kind: str
    project_slug: str
    name: str
    region: str = REGION

    def __str__(self) -> str:
        head = f"arn:{PARTITION}:{SERVICE}:{self.region}:{self.project_slug}"
        return f"{head}:{self.kind}/{self.name}"


def _slug(project) -> str:
    return project if isinstance(project, str) else project.slug


def arn_for(kind: str, project, name: str) -> str:
    """The ARN of ``project``'s (a Project or its slug) resource ``name`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"Unknown ARN kind {kind!r}; one of {', '.join(KINDS)}.")
    return str(Arn(kind, _slug(project), str(name)))


def parse_arn(arn, parameter: str = "arn") -> Arn:
    """The parts of ``arn``; InvalidInput (naming ``parameter``) if it is not a recsite ARN."""
    if not isinstance(arn, str) or not arn:
        raise InvalidInput(f"{parameter} must be an ARN such as {_example('campaign')}.")
    if len(arn) > MAX_LENGTH:
        raise InvalidInput(f"{parameter} is {len(arn)} characters long; the limit is {MAX_LENGTH}.")
    match = _ARN.match(arn)
    if match is None or match["kind"] not in KINDS:
        raise InvalidInput(
            f"{parameter} “{arn[:120]}” is not a valid ARN; copy it from the resource's page in "
            f"recsite, e.g. {_example('campaign')}."
        )
    return Arn(match["kind"], match["account"], match["name"], match["region"])


def resolve_arn(arn, project, expected_kinds, parameter: str = "arn") -> Arn:
    """``arn`` parsed and checked against the caller's ``project`` and ``expected_kinds``
    (a kind or a collection of kinds).

    InvalidInput if it is malformed or of another kind (a filter ARN sent as campaignArn);
    ResourceNotFound if it belongs to another project. Whether the named resource exists is
    for the caller to check (and answer ResourceNotFound the same way)."""
    kinds = (expected_kinds,) if isinstance(expected_kinds, str) else tuple(expected_kinds)
    parsed = parse_arn(arn, parameter)
    if parsed.kind not in kinds:
        raise InvalidInput(
            f"{parameter} must be the ARN of a {' or '.join(kinds)}; “{arn[:120]}” is a "
            f"{parsed.kind} ARN."
        )
    if parsed.project_slug != _slug(project):
        raise ResourceNotFound(not_found_message(parsed.kind, arn))
    return parsed


def not_found_message(kind: str, arn: str) -> str:
    return (
        f"No {kind} with ARN “{arn[:160]}” in the project of this access key. ARNs work only "
        "with a key of the same project; copy the ARN from the resource's page in recsite."
    )


def _example(kind: str) -> str:
    return f"arn:aws:personalize:local:my-shop:{kind}/default"
