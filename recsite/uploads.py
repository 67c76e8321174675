"""The upload size limit, enforced while the request body streams in.

``SizeLimitUploadHandler`` comes first in ``settings.FILE_UPLOAD_HANDLERS``. When the request
declares (``Content-Length``) or turns out to carry a file larger than
``settings.MAX_UPLOAD_BYTES``, it stops passing the file's bytes on: nothing of it is written
to memory or disk, and the view receives a ``RefusedUpload`` instead, an empty file whose
``size`` is the size that was sent. The views' usual size checks then answer with their message
("The file is 3.1 GB; the limit is 2.0 GB ..."), and the rest of the form (CSRF token, other
fields) is still read, so the browser gets a normal page instead of a reset connection.

A reverse proxy in front (nginx ``client_max_body_size``) can refuse such requests even
earlier, before they cross the network; see docs/operations.md.
"""

from __future__ import annotations

import contextlib
import errno
import io

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import (
    FileUploadHandler,
    StopFutureHandlers,
    TemporaryFileUploadHandler,
)


class UploadTooLarge(ValueError):
    pass


class RefusedUpload(UploadedFile):
    """Stands for a file that was over the size limit: it has a name and a size, no content.

    Reading it raises UploadTooLarge (a ValueError) with the message for the user, so code that
    does not check ``size`` first still fails with the right explanation, not "empty file".
    """

    refused = True

    def __init__(self, name: str, size: int, content_type: str = "", charset=None, problem=""):
        super().__init__(io.BytesIO(b""), name, content_type, size, charset)
        self.problem = problem  # why it was refused, when not its size

    @property
    def message(self) -> str:
        return self.problem or (
            f"{self.name} is {describe_size(self.size)}; uploads may be at most "
            f"{describe_size(max_upload_bytes())} (MAX_UPLOAD_MB)."
        )

    def chunks(self, chunk_size=None):
        raise UploadTooLarge(self.message)

    def read(self, *args):
        raise UploadTooLarge(self.message)

    def __iter__(self):
        raise UploadTooLarge(self.message)


def describe_size(size: int) -> str:
    if size >= 1024**3:
        return f"{size / 1024**3:.1f} GB"
    if size >= 1024**2:
        return f"{size / 1024**2:.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


# Room in a request body for the form fields around the file (a CSRF token, a few choices).
FORM_SLACK = 64 * 1024


def max_upload_bytes() -> int:
    return int(getattr(settings, "MAX_UPLOAD_BYTES", 2 * 1024**3))


class SizeLimitUploadHandler(FileUploadHandler):
    def __init__(self, request=None):
        super().__init__(request)
        self.declared_too_big = False
        self.refusing = False
        self.seen = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # The body holds the file plus the form's few small fields and the multipart framing
        # (FORM_SLACK); a file of exactly the limit must pass. Files sent with a smaller
        # declared length are still counted byte by byte below.
        limit = max_upload_bytes() + FORM_SLACK
        self.declared_too_big = bool(content_length) and content_length > limit
        return None

    def new_file(self, field_name, file_name, content_type, content_length, charset=None,
                 content_type_extra=None):  # fmt: skip
        super().new_file(
            field_name, file_name, content_type, content_length, charset, content_type_extra
        )
        self.seen = 0
        self.refusing = self.declared_too_big
        if self.refusing:
            raise StopFutureHandlers  # the other handlers never open a file for it

    def receive_data_chunk(self, raw_data, start):
        self.seen += len(raw_data)
        if self.seen > max_upload_bytes():
            self.refusing = True
        # None: later handlers get nothing more (the bytes are read off the socket, not kept).
        return None if self.refusing else raw_data

    def file_complete(self, file_size):
        if not self.refusing:
            return None  # the next handler (memory or temporary file) has the file
        return RefusedUpload(self.file_name, self.seen, self.content_type, self.charset)


class DiskSafeTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's handler for large uploads, but a full disk refuses the file instead of a 500.

    The partial temporary file is deleted at once (its space freed) and the view receives a
    RefusedUpload that says the server's disk is full.
    """

    failure: OSError | None = None

    def receive_data_chunk(self, raw_data, start):
        if self.failure is not None:
            return None
        try:
            return super().receive_data_chunk(raw_data, start)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            self.failure = exc
            with contextlib.suppress(OSError):
                self.file.close()  # a NamedTemporaryFile: closing deletes it
            return None

    def file_complete(self, file_size):
        if self.failure is None:
            return super().file_complete(file_size)
        return RefusedUpload(
            self.file_name,
            file_size,
            self.content_type,
            self.charset,
            problem=(
                f"The server's disk is full ({self.failure.strerror}): the file could not be "
                "stored and nothing of it was kept. Ask the administrator to free space on the "
                "disk holding DATA_DIR, then upload it again."
            ),
        )
