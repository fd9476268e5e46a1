"""The one blob-path parser: `raw/<source_id>/<yyyy>/<mm>/<dd>/<name>.csv|.parquet`.

The date in the path is the day the file's data starts; rows carry their own timestamps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import unquote, urlparse

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet")


class BlobPathError(ValueError):
    """A blob name that does not follow the raw layout."""


@dataclass(frozen=True)
class RawBlobPath:
    source_id: str
    day: date
    file_name: str

    @property
    def name(self) -> str:
        return f"{self.source_id}/{self.day:%Y/%m/%d}/{self.file_name}"


def validate_source_id(source_id: str, pattern: str, max_length: int) -> str:
    if not source_id:
        raise BlobPathError("source id is empty")
    if len(source_id) > max_length:
        raise BlobPathError(f"source id {source_id[:80]!r} is {len(source_id)} characters long; at most {max_length} are allowed")
    if not re.fullmatch(pattern, source_id):
        raise BlobPathError(f"source id {source_id!r} has characters outside the allowed pattern {pattern}")
    return source_id


def parse_raw_blob_name(name: str, pattern: str, max_length: int) -> RawBlobPath:
    """Parse a blob name relative to the raw container. Raises BlobPathError saying what is wrong."""
    parts = name.split("/")
    if len(parts) != 5:
        raise BlobPathError(
            f"blob {name!r} does not follow <source_id>/<yyyy>/<mm>/<dd>/<file>: it has {len(parts)} path segments, expected 5"
        )
    source_id, yyyy, mm, dd, file_name = parts
    validate_source_id(source_id, pattern, max_length)
    if not (len(yyyy) == 4 and yyyy.isdigit() and len(mm) == 2 and mm.isdigit() and len(dd) == 2 and dd.isdigit()):
        raise BlobPathError(f"blob {name!r}: date segments {yyyy}/{mm}/{dd} are not yyyy/mm/dd")
    try:
        day = date(int(yyyy), int(mm), int(dd))
    except ValueError as exc:
        raise BlobPathError(f"blob {name!r}: {yyyy}-{mm}-{dd} is not a calendar date") from exc
    if file_name in ("", ".", "..") or not file_name.lower().endswith(DATA_SUFFIXES):
        raise BlobPathError(f"blob {name!r}: file name must end with one of {', '.join(DATA_SUFFIXES)}")
    return RawBlobPath(source_id=source_id, day=day, file_name=file_name)


def blob_name_from_url(url: str, container: str) -> str | None:
    """The blob name inside `container` from an Event Grid `data.url`, decoded exactly once.

    Returns None when the URL points into another container.
    """
    parsed = urlparse(url)
    segments = parsed.path.split("/")
    # Azure: https://<account>.blob.../<container>/<blob>; Azurite (path style): http://host:port/<account>/<container>/<blob>
    index = 1 if ".blob." in (parsed.hostname or "") else 2
    if len(segments) > index + 1 and segments[index] == container:
        return unquote("/".join(segments[index + 1 :]))
    return None


def blob_name_from_subject(subject: str, container: str) -> str | None:
    """The blob name from an Event Grid subject `/blobServices/default/containers/<c>/blobs/<name>`."""
    prefix = f"/blobServices/default/containers/{container}/blobs/"
    if subject.startswith(prefix):
        return subject[len(prefix) :]
    return None
