import json

from django.db import connection


def test_healthz_reports_database_ok_without_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok", "database": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")


def test_healthz_returns_503_when_the_database_fails(client, db, monkeypatch):
    from django.db.utils import OperationalError

    class BrokenCursor:
        def __enter__(self):
            raise OperationalError("connection refused")

        def __exit__(self, *exc):
            return False

    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", lambda: BrokenCursor())
        response = client.get("/healthz")
    assert response.status_code == 503
    assert json.loads(response.content)["status"] == "error"


def test_pages_need_login(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_static_assets_are_served_locally(client, db):
    for path in (
        "/static/vendor/htmx.min.js",
        "/static/vendor/plotly.min.js",
        "/static/css/app.css",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
