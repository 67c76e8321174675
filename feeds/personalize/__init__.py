"""Amazon Personalize-compatible runtime API under /personalize/ (docs/personalize.md).

Apps built on the AWS SDKs (boto3 ``personalize-runtime`` / ``personalize-events``, the AWS
CLI) switch to recsite by pointing ``endpoint_url`` at ``https://<host>/personalize``:

- ``arns``: ARNs of campaigns, filters, datasets, ... and their resolution in a project;
- ``sigv4``: AWS Signature Version 4 verification (botocore recomputes the signature);
- ``auth``: the access key id / secret pair of an API key and the DRF authentication class;
- ``errors``: errors in AWS's JSON error shape, so SDK exception classes and retries work;
- ``runtime``: GetRecommendations and GetPersonalizedRanking over ``feeds.recommending``.
"""
