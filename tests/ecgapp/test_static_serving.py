"""Static files are served by WhiteNoise from an index made once per process and static configuration."""
from __future__ import annotations

from django.contrib.staticfiles import finders
from django.test import Client

from ecgapp import static_serving


def test_clients_share_one_index_and_serve_the_files(monkeypatch):
    first = Client().get("/static/favicon.svg")
    assert first.status_code == 200 and b"<svg" in b"".join(first.streaming_content)
    assert static_serving._INDEX

    def listed_again():
        raise AssertionError("the static files were listed again")

    monkeypatch.setattr(finders, "get_finders", listed_again)
    again = Client().get("/static/favicon.svg")  # a new handler, so a new middleware: the same index
    assert again.status_code == 200 and b"<svg" in b"".join(again.streaming_content)
    assert Client().get("/static/no-such-file.js").status_code == 404


def test_another_static_configuration_gets_its_own_index(settings, tmp_path):
    (tmp_path / "extra.txt").write_text("only in this folder")
    assert Client().get("/static/extra.txt").status_code == 404
    settings.STATICFILES_DIRS = [*settings.STATICFILES_DIRS, tmp_path]
    finders.get_finder.cache_clear()  # Django's own cache of the finders, as its setting_changed handler does
    resp = Client().get("/static/extra.txt")
    assert resp.status_code == 200 and b"".join(resp.streaming_content) == b"only in this folder"
