"""Refuses an upload that is over the archive size cap while it arrives, before
it is written anywhere, and leaves a note for the form to tell the person."""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext

# Room for the form's other fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


class SizeLimitedUploadHandler(FileUploadHandler):
    def __init__(self, request=None):
        super().__init__(request)
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > settings.SOURCE_MAX_ARCHIVE_BYTES + FORM_OVERHEAD_BYTES:
            # Handled: nothing of the body is read, parsed or stored.
            self._note(content_length)
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > settings.SOURCE_MAX_ARCHIVE_BYTES:
            self._refuse(self.received)
        return raw_data

    def file_complete(self, file_size):
        return None

    def _note(self, size):
        if self.request is not None:
            self.request.upload_refused_size = size

    def _refuse(self, size):
        self._note(size)
        raise StopUpload(connection_reset=False)


def upload_refusal(request) -> str | None:
    size = getattr(request, "upload_refused_size", None)
    if size is None:
        return None
    return gettext(
        "The upload is larger than %(limit)s MB, the limit for an archive. "
        "Leave out dependencies and build output (node_modules, .venv, dist) and try again."
    ) % {"limit": f"{settings.SOURCE_MAX_ARCHIVE_BYTES / 1e6:.0f}"}
