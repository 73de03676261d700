"""WhiteNoise with the index of the finders' static files made once per process, not once per handler.

WhiteNoise lists and stats every static file (the app's, the admin's, DRF's: ~180) when its middleware is made. A
server process makes it once; Django's test client makes a handler, so the middleware, for every client (10 ms each,
over a thousand times a suite). The index is kept per configuration that shapes it, so a test that changes the
static settings gets its own.
"""
from __future__ import annotations

from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware

_INDEX: dict[tuple, dict] = {}


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    def add_files_from_finders(self) -> None:
        key = (self.static_prefix, self.max_age, self.allow_all_origins, self.charset, self.index_file,
               tuple(str(d) for d in settings.STATICFILES_DIRS), tuple(settings.STATICFILES_FINDERS),
               tuple(settings.INSTALLED_APPS))
        index = _INDEX.get(key)
        if index is None:
            earlier, self.files = self.files, {}
            super().add_files_from_finders()
            index = _INDEX[key] = self.files
            self.files = earlier
        self.files.update(index)  # as WhiteNoise adds them: a finder's file replaces STATIC_ROOT's at its URL
