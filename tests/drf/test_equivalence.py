"""Patched list responses are byte-identical to DRF's, and the pool really served them."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.urls("tests.drf.urls")


def rows(response):
    data = json.loads(response.content)
    return data["results"] if isinstance(data, dict) else data


def test_plain_list(compare):
    response = compare("/api/items/")
    assert len(rows(response)) == 91


def test_unordered_queryset_yields_every_row_once(compare):
    response = compare("/api/unordered/")
    ids = [row["id"] for row in rows(response)]
    assert len(ids) == len(set(ids)) == 91


@pytest.mark.parametrize("query", ["", "?page=2", "?page=4&page_size=7", "?page=1&page_size=91"])
def test_page_number_pagination(compare, query):
    response = compare(f"/api/paged/{query}")
    assert json.loads(response.content)["count"] == 91


@pytest.mark.parametrize("query", ["?limit=10", "?limit=40&offset=33", "?limit=500"])
def test_limit_offset_pagination(compare, query):
    compare(f"/api/limited/{query}")


def test_cursor_pagination_every_page(compare):
    path, seen = "/api/cursor/", []
    while path:
        data = json.loads(compare(path).content)
        seen += [row["id"] for row in data["results"]]
        path = data["next"] and data["next"].replace("http://testserver", "")
    assert len(seen) == len(set(seen)) == 91


@pytest.mark.parametrize(
    "query",
    ["?search=ann", "?ordering=group", "?ordering=-group,name", "?search=ben&ordering=-name&limit=30&offset=5"],
)
def test_search_and_ordering_filters(compare, query):
    compare(f"/api/filtered/{query}")


def test_queryset_and_fields_depending_on_request_user(compare, client, drf_db):
    ann, ben = drf_db
    client.force_login(ann)
    mine = rows(compare("/api/mine/"))
    assert mine and all(row["name"].startswith("ann-") and row["seen_by"] == "ann" for row in mine)
    client.force_login(ben)
    assert all(row["seen_by"] == "ben" for row in rows(compare("/api/mine/")))


def test_request_in_serializer_context_hyperlinks_and_headers(compare):
    response = compare("/api/items/?tag=t1", HTTP_HOST="localhost:8443", **{"wsgi.url_scheme": "https"})
    first = rows(response)[0]
    assert first["url"].startswith("https://localhost:8443/api/items/")
    assert first["tag"] == "t1@https://localhost:8443/"


@pytest.mark.parametrize("path", ["/api/wide/", "/api/unicode/"])
def test_renderer_settings(compare, path):
    compare(path)


def test_indented_json_travels_as_objects(compare):
    response = compare("/api/items/", HTTP_ACCEPT="application/json; indent=2")
    assert response.content.startswith(b"[\n  {")


def test_uuid_primary_keys(compare):
    compare("/api/uuids/")


def test_response_data_reads_like_drf(drf_db, client):
    from multicore import drf

    drf.patch()
    patched = client.get("/api/paged/?page_size=50")
    drf.unpatch()
    plain = client.get("/api/paged/?page_size=50")
    assert list(patched.data["results"]) == json.loads(json.dumps(plain.data["results"]))
    assert len(patched.data["results"]) == 50
