"""Look at the start of an uploaded CSV: encoding, delimiter, header, preview. Django-free.

Only the first ``SAMPLE_BYTES`` are read, so this is instant on multi-GB files.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets.ingest.errors import IngestError

SAMPLE_BYTES = 256 * 1024
PREVIEW_ROWS = 10
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$")


@dataclass
class Dialect:
    encoding: str  # "utf-8", "utf-8-sig" (with BOM) or "latin-1"
    delimiter: str
    has_header: bool
    columns: list[str] = field(default_factory=list)
    preview: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Dialect:
        return cls(
            encoding=data["encoding"],
            delimiter=data["delimiter"],
            has_header=bool(data["has_header"]),
            columns=list(data.get("columns", [])),
            preview=[list(row) for row in data.get("preview", [])],
        )


def detect_encoding(sample: bytes, whole_file: bool = False) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise IngestError(
            "The file is UTF-16 encoded. Save it as CSV UTF-8 (Excel: 'CSV UTF-8') "
            "and upload it again."
        )
    if b"\x00" in sample[:4096]:
        raise IngestError("This looks like a binary file, not a CSV text file.")
    # A multi-byte character may be cut at the end of a sample: unless the sample is the whole
    # file, that is not an error (slicing off the last bytes would hide a final Latin-1 "é").
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(sample, final=whole_file)
    invalid = text.count("\ufffd")
    if not invalid:
        return "utf-8"
    # Valid multi-byte characters next to a few invalid bytes: a UTF-8 file with some bad
    # rows, which the reader rejects. Decoding it as Latin-1 would garble every accented
    # character in it ("café" -> "cafÃ©"); Latin-1 text hardly ever forms valid UTF-8.
    multibyte = len(text) - len(text.encode("ascii", errors="ignore")) - invalid
    return "utf-8" if multibyte > invalid else "latin-1"


def _split_lines(text: str, delimiter: str, limit: int = 50) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = []
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) >= limit:
                break
    except csv.Error:
        pass
    return rows


def detect_delimiter(text: str) -> str:
    """The delimiter that splits the sample lines into the same number (> 1) of fields."""
    best, best_score = ",", (-1.0, 0)
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if len(lines) > 1:
        lines = lines[:-1]  # the last sample line may be cut off
    sample = "\n".join(lines)
    for delimiter in DELIMITERS:
        counts = [len(row) for row in _split_lines(sample, delimiter)]
        if not counts:
            continue
        width, frequency = Counter(counts).most_common(1)[0]
        if width < 2:
            continue
        score = (frequency / len(counts), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _looks_like_header(first: list[str], rest: list[list[str]], known_names: set[str]) -> bool:
    normalised = {normalise_name(value) for value in first}
    if normalised & known_names:
        return True
    if any(_NUMBER.match(value) for value in first):
        return False
    # A column that is numeric below a non-numeric first value means the first row is a header.
    for column, value in enumerate(first):
        below = [row[column] for row in rest if column < len(row) and row[column]]
        if below and all(_NUMBER.match(v) for v in below) and not _NUMBER.match(value):
            return True
    return len(set(first)) == len(first) and all(v.strip() for v in first)


def normalise_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", name.strip().upper()).strip("_")


def sniff_csv(path: str | Path, known_names: set[str] | None = None) -> Dialect:
    """Detect encoding, delimiter and header of a CSV file and read a preview."""
    with open(path, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
        truncated = bool(handle.read(1))
    if not sample.strip():
        raise IngestError("The file is empty.")
    encoding = detect_encoding(sample, whole_file=not truncated)
    if b"\r" in sample and b"\n" not in sample:
        raise IngestError(
            "The file ends its lines with a bare carriage return (old Mac style). "
            "Save it again with Windows or Unix line endings and upload it again."
        )
    text = sample.decode(encoding, errors="replace")
    if truncated and "\n" in text:
        text = text[: text.rfind("\n")]  # drop the partial last line
    delimiter = detect_delimiter(text)
    rows = _split_lines(text, delimiter, limit=PREVIEW_ROWS + 1)
    if not rows:
        raise IngestError("The file has no rows.")
    has_header = _looks_like_header(rows[0], rows[1:], known_names or set())
    if has_header:
        columns = [column.strip() or f"column_{i + 1}" for i, column in enumerate(rows[0])]
        preview = rows[1 : PREVIEW_ROWS + 1]
    else:
        columns = [f"column_{i + 1}" for i in range(len(rows[0]))]
        preview = rows[:PREVIEW_ROWS]
    return Dialect(encoding, delimiter, has_header, columns, preview)
