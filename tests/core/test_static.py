import pytest
from django.test import Client


@pytest.mark.django_db
def test_static_files_are_served_by_the_application_itself() -> None:
    response = Client().get("/static/css/app.css")
    assert response.status_code == 200
    assert b"--bg" in b"".join(response.streaming_content)  # type: ignore[attr-defined]
