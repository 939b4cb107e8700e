import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse


@pytest.fixture
def staff_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    assert client.login(username="root", password="root-pass")
    return client


@pytest.mark.django_db
def test_admin_login_page_renders() -> None:
    response = Client().get("/admin/login/")
    assert response.status_code == 200
    assert b"username" in response.content


def test_staff_can_log_in_through_the_admin_form(db: None) -> None:
    get_user_model().objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": "root-pass"}, follow=True)
    assert response.status_code == 200
    assert b"Site administration" in response.content


def test_every_registered_model_has_a_working_changelist(staff_client: Client) -> None:
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = staff_client.get(url, {"q": "a"})
        assert response.status_code == 200, url


def test_anonymous_users_are_sent_to_the_admin_login(db: None) -> None:
    response = Client().get("/admin/market/symbol/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
