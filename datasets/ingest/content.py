"""Is an uploaded file text at all? Refuse binaries early, saying what the file seems to be.

Django-free. Only the first ``SAMPLE_BYTES`` are read, so the check is instant on any size.
A spreadsheet, archive or database file uploaded by mistake gets a message naming what it looks
like and how to make a CSV of it; any other file with NUL bytes or many control characters is
refused as "not a text file" rather than parsed into garbage rows.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from datasets.ingest.errors import IngestError

SAMPLE_BYTES = 256 * 1024
# Control characters other than tab, newline, form feed and carriage return; text files
# practically never contain them, binary files are full of them.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
MAX_CONTROL_FRACTION = 0.01

_SAVE_AS_CSV = "Save it as CSV (in Excel: File > Save As > CSV UTF-8) and upload that."
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", f"a ZIP archive or an Excel .xlsx workbook, not a CSV file. {_SAVE_AS_CSV} "
     "If it is an archive, unzip it and upload the CSV inside."),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", f"an old Excel .xls workbook. {_SAVE_AS_CSV}"),
    (b"\x1f\x8b", "gzip-compressed. Decompress it first (gunzip) and upload the CSV."),
    (b"BZh", "bzip2-compressed. Decompress it first (bunzip2) and upload the CSV."),
    (b"\xfd7zXZ\x00", "xz-compressed. Decompress it first (unxz) and upload the CSV."),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive. Extract it and upload the CSV inside."),
    (b"PAR1", "a Parquet file. Convert it to CSV first (e.g. pandas: "
     "pd.read_parquet(path).to_csv(out, index=False))."),
    (b"SQLite format 3\x00", "an SQLite database. Export the table as CSV and upload that."),
    (b"%PDF", "a PDF document, not a CSV file."),
    (b"\x89PNG", "a PNG image, not a CSV file."),
    (b"\xff\xd8\xff", "a JPEG image, not a CSV file."),
    (b"GIF8", "a GIF image, not a CSV file."),
)  # fmt: skip


def check_text_bytes(sample: bytes) -> None:
    """Raise IngestError unless ``sample`` (a file's first bytes) looks like a text file."""
    for signature, description in _SIGNATURES:
        if sample.startswith(signature):
            raise IngestError(f"This file is {description}")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_utf16(sample):
        raise IngestError(
            "The file is UTF-16 encoded. Save it as CSV UTF-8 (Excel: 'CSV UTF-8') "
            "and upload it again."
        )
    if b"\x00" in sample:
        offset = sample.index(b"\x00")
        line = sample[:offset].count(b"\n") + 1
        raise IngestError(
            f"This is not a text file: it contains NUL bytes (the first at byte {offset + 1:,}, "
            f"line {line}), which a CSV file never has. Upload the data as a CSV text file "
            "(UTF-8 or Latin-1)."
        )
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    if sample and controls / len(sample) > MAX_CONTROL_FRACTION:
        raise IngestError(
            f"This is not a text file: {controls:,} of its first {len(sample):,} bytes are "
            "control characters. Upload the data as a CSV text file (UTF-8 or Latin-1)."
        )


def _looks_utf16(sample: bytes) -> bool:
    """UTF-16 without a BOM: ASCII text with a NUL after (or before) every character."""
    head = sample[:512]
    if len(head) < 8:
        return False
    even, odd = head[0::2], head[1::2]
    return odd.count(0) > 0.8 * len(odd) or even.count(0) > 0.8 * len(even)


def check_text_content(path: str | Path) -> None:
    """Raise IngestError unless the file at ``path`` starts like a text file."""
    with open(path, "rb") as handle:
        check_text_bytes(handle.read(SAMPLE_BYTES))
