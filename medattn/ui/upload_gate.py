"""The upload gate: ASGI middleware in front of Streamlit's upload endpoint (PUT and DELETE
/_stcore/upload_file/<session>/<file>), installed by app.py.

A PUT is answered before its body is read unless medattn.ui.uploads admits it (an admin's
uploader offered to that session and browser, within its size, count and disk room); then the
multipart body is parsed as it arrives (python-multipart), the file part written to disk and
counted against the bound, and Streamlit's own handler gets the same request with a placeholder
of a few bytes in place of the file. Streamlit alone would hold every file in memory for any
session that asked. A refused upload gets its reason as plain text with the HTTP status.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medattn.ui import auth, uploads
from medattn.ui.uploads import UploadRefused

ROUTE = re.compile(r"/_stcore/upload_file/([^/]+)/([^/]+)/?$")
FRAMING = 64 * 1024  # multipart boundaries and part headers around the file
PARSE_BLOCK = 2**20  # bytes handed to the parser (in a worker thread) at a time
FIELD_BYTES = 64 * 1024  # a part that is not a file (Streamlit sends none)


class UploadGate:
    """ASGI middleware: every other request passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        uploads.mark_gated()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = ROUTE.search(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] not in ("PUT", "DELETE"):
            await self.app(scope, receive, send)
            return
        session_id, file_id = match.groups()
        request = Request(scope, receive)
        try:
            _check_xsrf(request)
            if scope["method"] == "DELETE":
                uploads.drop(session_id, file_id)
                await self.app(scope, receive, send)
                return
            declared = request.headers.get("content-length")
            bound = uploads.admit(session_id, auth.browser_secret(request.cookies.get(auth.XSRF_COOKIE)),
                                  int(declared) if declared and declared.isdigit() else None)
            try:
                name, received = await _to_disk(request, bound)
                upload = uploads.hold(session_id, file_id, name, received)
            finally:
                uploads.arrived(session_id, bound)
        except UploadRefused as refused:
            await PlainTextResponse(str(refused), status_code=refused.status)(scope, receive, send)
            return
        except ClientDisconnect:
            return
        body, content_type = _placeholder_form(upload)
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length",
                                                                    b"transfer-encoding")]
        forwarded = {**scope, "headers": [*headers, (b"content-type", content_type),
                                          (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(forwarded, replay, watch)
        if not 200 <= status < 300:
            uploads.drop(session_id, file_id)


def _check_xsrf(request: Request) -> None:
    """Streamlit's own check (the X-Xsrftoken header against the XSRF cookie), made before the
    body is read."""
    from streamlit.web.server.server_util import is_xsrf_enabled
    from streamlit.web.server.starlette.starlette_app_utils import validate_xsrf_token

    if is_xsrf_enabled() and not validate_xsrf_token(request.headers.get("X-Xsrftoken"),
                                                     request.cookies.get(auth.XSRF_COOKIE)):
        raise UploadRefused("XSRF token missing or invalid.", 403)


class _DiskForm:
    """python-multipart callbacks that write the one file part to a new file in `folder`, at
    most `bound` bytes; other parts are read and dropped (at most FIELD_BYTES each)."""

    def __init__(self, folder: Path, bound: int) -> None:
        self.folder, self.bound = folder, bound
        self.field, self.value, self.headers = b"", b"", {}
        self.name: str | None = None
        self.path: Path | None = None
        self.out: BinaryIO | None = None
        self.size = self.other = 0
        self.ended = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end, "on_end": self.end}

    def part_begin(self) -> None:
        self.headers, self.other = {}, 0

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field, self.value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        if b"filename" not in options:
            return
        if self.path is not None:
            raise UploadRefused("One file per upload.", 400)
        self.name = options[b"filename"].decode("utf-8", "replace")
        self.path = self.folder / f"{secrets.token_hex(8)}.part"
        self.out = open(self.path, "wb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.out is None:
            self.other += end - start
            if self.other > FIELD_BYTES:
                raise UploadRefused("The upload holds something other than one file.", 400)
            return
        self.size += end - start
        if self.size > self.bound:
            raise UploadRefused(f"The file is larger than the {uploads.megabytes(self.bound)} this upload takes.", 413)
        self.out.write(data[start:end])

    def part_end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None

    def end(self) -> None:
        self.ended = True

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def _to_disk(request: Request, bound: int) -> tuple[str, Path]:
    """The browser's name of the one file in the multipart body of `request` and where it now
    lies (in the uploads spool); UploadRefused past `bound` bytes or for a malformed body."""
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadRefused("An upload is a multipart/form-data request.", 400)
    form = _DiskForm(uploads.spool(), bound)
    parser = MultipartParser(options[b"boundary"], form.callbacks(), max_size=bound + FRAMING)
    try:
        block, total = bytearray(), 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > bound + FRAMING:
                raise UploadRefused(f"The file is larger than the {uploads.megabytes(bound)} this upload takes.", 413)
            block += chunk
            if len(block) >= PARSE_BLOCK:
                await run_in_threadpool(parser.write, bytes(block))
                block.clear()
        if block:
            await run_in_threadpool(parser.write, bytes(block))
        parser.finalize()
        if form.path is None or not form.ended or form.out is not None:
            raise UploadRefused("The upload ended before its file did.", 400)
    except BaseException:
        form.discard()
        raise
    return form.name or "upload", form.path


def _placeholder_form(upload: uploads.Upload) -> tuple[bytes, bytes]:
    """A multipart body carrying the placeholder of `upload` under its name, and its content type."""
    boundary = secrets.token_hex(16)
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{upload.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    body += uploads.PLACEHOLDER + upload.token.encode() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}".encode()
