"""PicklableWSGIRequest: a request rebuilt in a real worker answers like the original."""

from __future__ import annotations

import io
import pickle
import threading

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.db import SessionStore
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from rest_framework.request import Request

import multicore
from multicore.utils import PicklableWSGIRequest


def describe(request) -> dict:
    """What a view would read from ``request`` (runs in the worker)."""
    user = getattr(request, "user", None)
    return {
        "class": type(request).__name__,
        "method": request.method,
        "path": request.path,
        "path_info": request.path_info,
        "full_path": request.get_full_path(),
        "GET": {k: request.GET.getlist(k) for k in request.GET},
        "POST": {k: request.POST.getlist(k) for k in request.POST},
        "FILES": list(request.FILES),
        "body": request.body if request.content_type != "multipart/form-data" else None,
        "headers": {k: v for k, v in request.headers.items() if k.startswith("X-") or k == "Accept"},
        "cookies": dict(request.COOKIES),
        "scheme": request.scheme,
        "secure": request.is_secure(),
        "host": request.get_host(),
        "absolute": request.build_absolute_uri(),
        "remote": request.META.get("REMOTE_ADDR"),
        "user": None if user is None else (user.username, user.pk, user.is_authenticated),
        "session": dict(request.session) if hasattr(request, "session") else None,
        "resolved": request.resolver_match.route if request.resolver_match else None,
        "meta_objects": sorted(
            k for k, v in request.META.items() if not isinstance(v, (str, bytes, int, float, bool, tuple, type(None)))
        ),
    }


def in_worker(request):
    task = multicore.Task()
    assert task is not None
    task.run(describe, request)
    return task.get(timeout=30)[0]


def get_request(user):
    request = RequestFactory().get(
        "/pool/?a=1&a=2&b=caf%C3%A9",
        HTTP_HOST="localhost:8443",
        HTTP_X_TRACE="t-42",
        HTTP_ACCEPT="application/json",
        HTTP_COOKIE="theme=dark; sessionid=abc",
        REMOTE_ADDR="10.1.2.3",
        secure=True,
    )
    request.META["gunicorn.socket"] = threading.Lock()  # a server object that must stay behind
    request.user = user
    return request


@pytest.mark.django_db(transaction=True)
def test_get_request_with_authenticated_user(multicore_db):
    user = User.objects.create_user("ann", password="x")
    request = get_request(user)
    seen = in_worker(PicklableWSGIRequest(request))
    assert seen == {
        "class": "PicklableWSGIRequest",
        "method": "GET",
        "path": "/pool/",
        "path_info": "/pool/",
        "full_path": "/pool/?a=1&a=2&b=caf%C3%A9",
        "GET": {"a": ["1", "2"], "b": ["caf\u00e9"]},
        "POST": {},
        "FILES": [],
        "body": b"",
        "headers": {"X-Trace": "t-42", "Accept": "application/json"},
        "cookies": {"theme": "dark", "sessionid": "abc"},
        "scheme": "https",
        "secure": True,
        "host": "localhost:8443",
        "absolute": "https://localhost:8443/pool/?a=1&a=2&b=caf%C3%A9",
        "remote": "10.1.2.3",
        "user": ("ann", user.pk, True),
        "session": None,
        "resolved": seen["resolved"],  # depends on the urlconf the worker was forked with
        "meta_objects": ["wsgi.input"],  # the worker's own empty stream, not the parent's
    }


def test_anonymous_user_and_form_post(pool):
    request = RequestFactory().post("/form/", {"name": "Zoë", "tags": ["x", "y"]}, HTTP_HOST="localhost")
    request.user = AnonymousUser()
    seen = in_worker(PicklableWSGIRequest(request))
    assert (seen["method"], seen["POST"]) == ("POST", {"name": ["Zoë"], "tags": ["x", "y"]})
    assert seen["user"] == ("", None, False)
    assert request.POST["name"] == "Zoë"  # the original still reads its body


def test_json_body_travels_and_files_stay_behind(pool):
    request = RequestFactory().post("/api/", data=b'{"k": [1, 2]}', content_type="application/json")
    assert in_worker(PicklableWSGIRequest(request))["body"] == b'{"k": [1, 2]}'
    upload = SimpleUploadedFile("a.txt", b"file body")
    multipart = RequestFactory().post("/upload/", {"title": "t", "file": upload})
    seen = in_worker(PicklableWSGIRequest(multipart))
    assert (seen["POST"], seen["FILES"], seen["body"]) == ({"title": ["t"]}, [], None)


@pytest.mark.django_db(transaction=True)
def test_session_and_resolver_match(multicore_db, settings):
    settings.ROOT_URLCONF = "tests.testapp.urls"
    multicore.shutdown()  # workers are forked with the settings of the moment
    session = SessionStore()
    session["cart"] = [1, 2]
    request = RequestFactory().get("/pool/")
    request.session = session
    seen = in_worker(PicklableWSGIRequest(request))
    assert seen["session"] == {"cart": [1, 2]}
    assert seen["resolved"] == "pool/" and seen["user"] is None


def test_drf_request_and_unicode_path(pool):
    django_request = RequestFactory().get("/caf\u00e9/\u20ac/?q=1")
    django_request.user = AnonymousUser()
    seen = in_worker(PicklableWSGIRequest(Request(django_request)))
    assert (seen["path"], seen["GET"]) == ("/caf\u00e9/\u20ac/", {"q": ["1"]})


def test_clear_errors():
    with pytest.raises(TypeError, match="needs a django WSGIRequest"):
        PicklableWSGIRequest(object())
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.user.lock = threading.Lock()
    with pytest.raises(TypeError, match=r"cannot carry request\.user"):
        PicklableWSGIRequest(request)


def test_copy_pickles_without_server_objects():
    request = get_request(AnonymousUser())
    request.META["wsgi.errors"] = io.StringIO()
    copy = pickle.loads(pickle.dumps(PicklableWSGIRequest(request)))
    assert "gunicorn.socket" not in copy.META and "wsgi.errors" not in copy.META
    assert copy.META["HTTP_X_TRACE"] == "t-42"
