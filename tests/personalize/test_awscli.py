"""The AWS CLI (v1, ``awscli`` from PyPI) pointed at recsite with ``--endpoint-url``.

awscli 1.46+ ships its own copy of botocore, so it installs next to whatever boto3/botocore
the project pins; without it installed these tests are skipped (with the reason).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from datasets.models import Interaction
from feeds.personalize import events as pz_events

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("awscli") is None,
    reason="awscli is not installed (pip install awscli, see requirements.txt)",
)


def _aws(server, tmp_path, access_key: str, secret: str, *args: str, endpoint_from_env=False):
    """Run ``aws <args> --endpoint-url <server> --output json`` with credentials in the
    environment only (no config or credentials files of this machine); with
    ``endpoint_from_env`` the endpoint comes from AWS_ENDPOINT_URL_PERSONALIZE_* instead."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "local",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_MAX_ATTEMPTS": "1",
    }
    endpoint = ["--endpoint-url", server.endpoint]
    if endpoint_from_env:
        env["AWS_ENDPOINT_URL_PERSONALIZE_EVENTS"] = server.endpoint
        env["AWS_ENDPOINT_URL_PERSONALIZE_RUNTIME"] = server.endpoint
        endpoint = []
    return subprocess.run(
        [sys.executable, "-m", "awscli", *args, *endpoint, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_get_recommendations_from_the_cli(personalize_server, personalize_shop, runtime, tmp_path):
    shop = personalize_shop
    result = _aws(
        personalize_server,
        tmp_path,
        shop.access_key,
        shop.secret,
        "personalize-runtime",
        "get-recommendations",
        "--campaign-arn",
        shop.campaign_arn,
        "--user-id",
        "u00003",
        "--num-results",
        "5",
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    items = [entry["itemId"] for entry in output["itemList"]]
    assert len(items) == 5 and len(set(items)) == 5
    assert all(entry["score"] > 0 for entry in output["itemList"])
    assert output["recommendationId"]
    # The same answer as boto3's (the model is deterministic without exploration).
    same = runtime.get_recommendations(campaignArn=shop.campaign_arn, userId="u00003", numResults=5)
    assert items == [entry["itemId"] for entry in same["itemList"]]


def test_put_events_from_the_cli_with_the_endpoint_in_the_environment(
    personalize_server, personalize_shop, tmp_path
):
    shop = personalize_shop
    session = f"cli-{time.time_ns()}"
    event = {"eventType": "click", "itemId": "i00042", "sentAt": int(time.time())}
    result = _aws(
        personalize_server,
        tmp_path,
        shop.access_key,
        shop.secret,
        "personalize-events",
        "put-events",
        "--tracking-id",
        pz_events.tracking_id(shop.project),
        "--session-id",
        session,
        "--event-list",
        json.dumps([event]),
        endpoint_from_env=True,
    )
    assert result.returncode == 0, result.stderr
    row = Interaction.objects.get(project=shop.project, session_id=session)
    assert (row.item.external_id, row.user.external_id, row.event_type) == (
        "i00042",
        session,
        "click",
    )


def test_cli_errors_name_the_aws_error_code(personalize_server, personalize_shop, tmp_path):
    shop = personalize_shop
    wrong_secret = _aws(
        personalize_server,
        tmp_path,
        shop.access_key,
        "not-the-secret",
        "personalize-runtime",
        "get-recommendations",
        "--campaign-arn",
        shop.campaign_arn,
        "--user-id",
        "u00003",
    )
    assert wrong_secret.returncode != 0
    assert "InvalidSignatureException" in wrong_secret.stderr
    unknown = _aws(
        personalize_server,
        tmp_path,
        shop.access_key,
        shop.secret,
        "personalize-runtime",
        "get-recommendations",
        "--campaign-arn",
        shop.arn("campaign", "no-such-campaign"),
        "--user-id",
        "u00003",
    )
    assert unknown.returncode != 0
    assert "ResourceNotFoundException" in unknown.stderr
