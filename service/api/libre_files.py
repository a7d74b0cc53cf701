"""LibreTranslate's ``/translate_file`` and ``/download_file``: ``.txt`` and ``.html`` files.

A translated file is kept in memory under an unguessable name
(``secrets.token_urlsafe``) until ``translated_file_ttl_s`` passes; all kept files together
stay under ``translated_files_max_bytes`` (the oldest leave first), so memory is bounded.
A text file is translated line by line (each line's leading and trailing whitespace and the
line breaks kept); an HTML file's text runs are translated and its markup kept
(``service/api/markup.py``).
"""

from __future__ import annotations

import posixpath
import re
import secrets
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from starlette.datastructures import UploadFile

from service.api import libretranslate as lt
from service.api.errors import ApiError
from service.api.state import AppState

FILE_FORMATS = (".txt", ".html", ".htm")
MEDIA_TYPES = {".txt": "text/plain; charset=utf-8", ".html": "text/html; charset=utf-8",
               ".htm": "text/html; charset=utf-8"}
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
LINE = re.compile(r"([^\n]*)(\n|$)")


@dataclass(frozen=True)
class StoredFile:
    """A translated file waiting to be downloaded."""

    filename: str
    content: bytes

    @property
    def media_type(self) -> str:
        """Its content type, from its extension."""
        return MEDIA_TYPES[posixpath.splitext(self.filename)[1].lower()]


class FileStore:
    """Translated files by download name, expiring, bounded in bytes."""

    def __init__(self, *, max_bytes: int, ttl_s: float) -> None:
        self._files: TTLCache[str, StoredFile] = TTLCache(
            maxsize=max_bytes, ttl=ttl_s, getsizeof=lambda stored: len(stored.content) or 1)
        self.max_bytes = max_bytes

    def put(self, filename: str, content: bytes) -> str:
        """Keep a file; returns its download name ``<random>.<safe filename>``."""
        if len(content) > self.max_bytes:
            raise ApiError(400, "file_too_large", "Invalid request: the translated file is "
                           f"larger than the store ({self.max_bytes} bytes)", field="file",
                           limit=self.max_bytes)
        name = f"{secrets.token_urlsafe(24)}.{safe_name(filename)}"
        self._files[name] = StoredFile(safe_name(filename), content)
        return name

    def get(self, name: str) -> StoredFile:
        """The file kept under ``name`` (LibreTranslate's 400 ``Invalid filename`` when it
        expired or never existed)."""
        stored = self._files.get(name)
        if stored is None:
            raise ApiError(400, "invalid_filename", "Invalid filename", field="filename")
        return stored


def safe_name(filename: str) -> str:
    """The base name with anything but letters, digits, ``.``, ``_`` and ``-`` replaced."""
    base = posixpath.basename(filename.replace("\\", "/"))
    return UNSAFE.sub("_", base).strip(".") or "file.txt"


async def read_upload(fields: dict[str, Any], max_bytes: int) -> tuple[str, str]:
    """The uploaded file's name and UTF-8 text, after LibreTranslate's checks (missing,
    empty name, unsupported extension) and ours (size, encoding)."""
    upload = fields.get("file")
    if not isinstance(upload, UploadFile):
        raise lt.missing("file")
    filename = upload.filename or ""
    if not filename:
        raise ApiError(400, "empty_file", "Invalid request: empty file", field="file")
    if posixpath.splitext(filename)[1].lower() not in FILE_FORMATS:
        raise ApiError(400, "unsupported_file_format", "Invalid request: file format not "
                       f"supported (supported: {', '.join(FILE_FORMATS)})", field="file",
                       details={"supported": list(FILE_FORMATS)})
    content = await upload.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise ApiError(400, "file_too_large", f"Invalid request: file larger than {max_bytes} "
                       "bytes", field="file", limit=max_bytes)
    try:
        return filename, content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_utf8", "Invalid request: the file is not UTF-8 text",
                       field="file") from None


async def translate_text_file(state: AppState, text: str, source: str, target: str) -> str:
    """Each non-blank line translated, whitespace around it and line breaks kept."""
    lines = [(match.group(1), match.group(2)) for match in LINE.finditer(text)
             if match.group(0)]
    wanted = [line.strip() for line, _ in lines if line.strip()]
    chunk = state.settings.max_texts
    done: list[str] = []
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        results = await lt.run_grouped(state, part, [source] * len(part), target,
                                       html=False, alternatives=0)
        done.extend(result.text for result in results)
    out, taken = [], iter(done)
    for line, end in lines:
        body = line.strip()
        if body:
            head = line[: len(line) - len(line.lstrip())]
            tail = line[len(line.rstrip()) :]
            line = head + next(taken) + tail
        out.append(line + end)
    return "".join(out)


async def translate_file(state: AppState, store: FileStore, fields: dict[str, Any]) -> str:
    """Translate the uploaded file; returns the download name of the translation."""
    source, target = lt.language_fields(state, fields)
    filename, text = await read_upload(fields, state.settings.max_file_bytes)
    routes = state.registry.routes()
    lt.check_language(routes, source, "source")
    lt.check_language(routes, target, "target")
    lt.route_for(routes, source, target)
    if posixpath.splitext(filename)[1].lower() == ".txt":
        translated = await translate_text_file(state, text, source, target)
    else:
        results = await lt.run_grouped(state, [text], [source], target, html=True,
                                       alternatives=0)
        translated = results[0].text
    return store.put(filename, translated.encode("utf-8"))
