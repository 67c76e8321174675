"""Read a CSV in chunks, validate every value, and yield clean typed frames. Django-free.

Each chunk comes back as a ``Chunk``: a DataFrame of valid rows in canonical columns
(the schema's field names), the rejected rows with their line number, column and reason,
and counters. Nothing here writes anywhere, so the same code does the dry run and the load.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from datasets.ingest.errors import IngestError
from datasets.ingest.schema import MAX_ID_LENGTH, RESERVED_FIELDS, Field
from datasets.ingest.sniff import Dialect

CHUNK_ROWS = 100_000
MAX_CATEGORY_LENGTH = 1000
MAX_TEXT_LENGTH = 20_000
MAX_IMPRESSION_ITEMS = 500
# Epoch seconds must fall between 1970 and 2100; larger numbers are milliseconds or microseconds.
MAX_EPOCH_SECONDS = 4_102_444_800
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_NOT_NEGATIVE = {"EVENT_VALUE", "WEIGHT"}


@dataclass
class Rejection:
    line: int
    column: str
    reason: str
    value: str = ""


@dataclass
class Chunk:
    frame: pd.DataFrame
    rejected: list[Rejection] = field(default_factory=list)
    rows_read: int = 0
    blank_lines: int = 0
    duplicates: int = 0
    # Rows of ``frame`` whose id an earlier chunk already had: loaded (the last row wins),
    # but not accepted twice, so accepted + rejected + duplicates + blank = rows read.
    superseding: int = 0
    bytes_read: int = 0


@dataclass
class _Problems:
    """Collects the first problem found for each row of a chunk."""

    skip: np.ndarray  # rows never reported (blank lines)
    found: list = field(default_factory=list)

    def __post_init__(self):
        self.bad = self.skip.copy()

    def add(self, mask: np.ndarray, column: str, reason: str, values: pd.Series):
        new = mask & ~self.bad
        if new.any():
            for position in np.flatnonzero(new):
                self.found.append((int(position), column, reason, str(values.iat[position])[:200]))
            self.bad |= new


# --- value parsers (vectorised; each returns parsed values and a mask of bad ones) --------


def parse_timestamps(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch seconds (float, NaN where empty), a bad mask, and an out-of-range mask.

    Accepts epoch seconds, epoch milliseconds, epoch microseconds and ISO 8601 strings.
    """
    text = values.str.strip()
    empty = _mask(text == "", na_value=True)
    numbers = _to_float(text)
    is_number = ~np.isnan(numbers)
    seconds = numbers.copy()
    magnitude = np.abs(numbers)
    with np.errstate(invalid="ignore"):
        seconds = np.where(magnitude >= 1e14, numbers / 1e6, seconds)
        seconds = np.where((magnitude >= 1e11) & (magnitude < 1e14), numbers / 1e3, seconds)
    needs_date = ~is_number & ~empty
    if needs_date.any():
        parsed = pd.to_datetime(
            text[needs_date], format="ISO8601", utc=True, errors="coerce"
        ).to_numpy(dtype="datetime64[ns]")
        as_seconds = parsed.astype("int64") / 1e9
        as_seconds[np.isnat(parsed)] = np.nan
        seconds[needs_date] = as_seconds
    bad = ~empty & np.isnan(seconds)
    with np.errstate(invalid="ignore"):
        out_of_range = ~np.isnan(seconds) & ((seconds < 0) | (seconds > MAX_EPOCH_SECONDS))
    return seconds, bad, out_of_range


def _mask(values: pd.Series, na_value: bool = False) -> np.ndarray:
    """A plain numpy bool array from a (possibly Arrow-backed, nullable) boolean Series."""
    return values.to_numpy(dtype=bool, na_value=na_value)


def _to_float(text: pd.Series) -> np.ndarray:
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def parse_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    text = values.str.strip()
    empty = _mask(text == "", na_value=True)
    numbers = _to_float(text)
    bad = ~empty & ~np.isfinite(numbers)
    return numbers, bad


def parse_booleans(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    text = values.str.strip().str.lower()
    parsed = pd.Series(pd.NA, index=values.index, dtype="boolean")
    parsed[text.isin(_TRUE)] = True
    parsed[text.isin(_FALSE)] = False
    bad = _mask(text != "") & parsed.isna().to_numpy()
    return parsed, bad


def split_multi(values: pd.Series) -> pd.Series:
    """'a|b| c' -> 'a|b|c' (stripped, empty parts dropped)."""
    joined = values.str.replace(r"\s*\|\s*", "|", regex=True)
    return joined.str.replace(r"\|{2,}", "|", regex=True).str.strip("|")


def is_valid_utf8(path, block_size: int = 16 * 1024 * 1024) -> bool:
    """Whether the whole file decodes as UTF-8 (a fast C-level pass over the bytes)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(block_size):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


# --- the reader -----------------------------------------------------------------------


class ChunkValidator:
    """Validates one chunk's columns against the schema fields they are mapped to."""

    def __init__(
        self, kind: str, mapping: dict[str, str], fields: list[Field], check_encoding=False
    ):
        self.kind = kind
        self.check_encoding = check_encoding
        self.by_name = {f.name: f for f in fields}
        self.mapping = {column: name for column, name in mapping.items() if name}
        unknown = set(self.mapping.values()) - set(self.by_name)
        if unknown:
            raise IngestError(f"Columns are mapped to fields not in the schema: {sorted(unknown)}.")
        missing = [
            f.name
            for f in RESERVED_FIELDS[kind]
            if f.required and f.name not in self.mapping.values()
        ]
        if missing:
            raise IngestError(
                f"No column is mapped to the required field(s) {', '.join(missing)}. "
                "Map a column to each required field."
            )

    def validate(self, raw: pd.DataFrame, blank: np.ndarray) -> tuple[pd.DataFrame, _Problems]:
        problems = _Problems(blank)
        out: dict[str, object] = {}
        if self.check_encoding:  # report the column that holds the bad bytes, and its value
            for column in self.mapping:
                problems.add(
                    _mask(raw[column].str.contains("\ufffd", regex=False)),
                    column,
                    "contains bytes that are not valid UTF-8 (re-save the file as UTF-8)",
                    raw[column],
                )
        for column, name in self.mapping.items():
            out[name] = self._validate_column(raw[column], column, self.by_name[name], problems)
        frame = pd.DataFrame(out, index=raw.index)
        if self.kind == "relations":
            follower_column = next(c for c, n in self.mapping.items() if n == "FOLLOWER_ID")
            problems.add(
                _mask(frame["FOLLOWER_ID"] == frame["FOLLOWEE_ID"]),
                follower_column,
                "a user cannot follow themselves",
                raw[follower_column],
            )
        for f in RESERVED_FIELDS[self.kind]:
            if f.name not in frame:
                frame[f.name] = _default_for(f, len(frame))
        return frame, problems

    def _validate_column(self, values: pd.Series, column: str, f: Field, problems: _Problems):
        text = values.str.strip()
        empty = _mask(text == "")
        if f.required:
            problems.add(empty, column, f"{f.name} is missing", values)
        if f.type == "id":
            problems.add(
                text.str.len().to_numpy() > MAX_ID_LENGTH,
                column,
                f"{f.name} is longer than {MAX_ID_LENGTH} characters",
                values,
            )
            return text
        if f.type == "timestamp":
            seconds, bad, out_of_range = parse_timestamps(values)
            problems.add(
                bad,
                column,
                f"{f.name} is not a timestamp (use epoch seconds, epoch milliseconds "
                "or ISO 8601 like 2024-05-01T12:00:00Z)",
                values,
            )
            problems.add(out_of_range, column, f"{f.name} is before 1970 or after 2100", values)
            # Rejected values (e.g. 1e99, out of range) must not reach the Int64 cast.
            keep = ~(np.isnan(seconds) | bad | out_of_range)
            return pd.array(np.where(keep, np.floor(np.where(keep, seconds, 0)), np.nan), "Int64")
        if f.type == "numeric":
            numbers, bad = parse_numbers(values)
            problems.add(bad, column, f"{f.name} is not a finite number", values)
            if f.name in _NOT_NEGATIVE:
                with np.errstate(invalid="ignore"):
                    problems.add(numbers < 0, column, f"{f.name} must not be negative", values)
            return numbers
        if f.type == "boolean":
            parsed, bad = parse_booleans(values)
            problems.add(bad, column, f"{f.name} is not a boolean (true/false)", values)
            return parsed
        if f.type == "categorical":
            if f.multi:
                text = split_multi(text)
                if f.name == "IMPRESSION":
                    too_many = text.str.count(r"\|").to_numpy() + 1 > MAX_IMPRESSION_ITEMS
                    problems.add(
                        too_many,
                        column,
                        f"IMPRESSION lists more than {MAX_IMPRESSION_ITEMS} items",
                        values,
                    )
            problems.add(
                text.str.len().to_numpy() > MAX_CATEGORY_LENGTH,
                column,
                f"{f.name} is longer than {MAX_CATEGORY_LENGTH} characters",
                values,
            )
            return text
        problems.add(
            text.str.len().to_numpy() > MAX_TEXT_LENGTH,
            column,
            f"{f.name} is longer than {MAX_TEXT_LENGTH} characters",
            values,
        )
        return text


def _default_for(f: Field, size: int):
    if f.type in ("timestamp",):
        return pd.array([pd.NA] * size, dtype="Int64")
    if f.type == "numeric":
        return np.full(size, np.nan)
    return np.full(size, "", dtype=object)


def attribute_records(frame: pd.DataFrame, fields: list[Field]) -> list[dict]:
    """Per-row attribute dicts (JSON-ready) for items/users; empty values are left out."""
    columns = {}
    for f in fields:
        values = frame[f.name]
        if f.type == "categorical" and f.multi:
            columns[f.name] = [v.split("|") if v else None for v in values]
        elif f.type == "numeric":
            columns[f.name] = [None if np.isnan(v) else float(v) for v in values]
        elif f.type in ("boolean", "timestamp"):
            columns[f.name] = [None if pd.isna(v) else v.item() for v in values.array]
        else:
            columns[f.name] = [v if v else None for v in values]
    names = list(columns)
    return (
        [
            {name: value for name, value in zip(names, row, strict=True) if value is not None}
            for row in zip(*columns.values(), strict=True)
        ]
        if names
        else [{} for _ in range(len(frame))]
    )


def long_records(path, dialect: Dialect, block_bytes: int = 16 * 1024 * 1024) -> dict[int, int]:
    """Records with more fields than the file has columns: {line: number of fields}.

    Lines are numbered like pandas numbers them (one per record, the header is line 1).
    pandas' C parser cannot be trusted with this: it exempts the first row of each of its
    buffers from the check, measures the next rows against that row, and silently cuts
    the extra fields off the rows it does not catch. Blocks without quotes are counted
    with numpy; from the first quote on, Python's csv module (same quoting rules) counts.
    """
    found: dict[int, int] = {}
    if len(dialect.delimiter) != 1:
        return found  # pandas itself refuses such a delimiter with the C engine
    width, delimiter = len(dialect.columns), ord(dialect.delimiter)
    records = 0  # records counted before the current block
    with open(path, "rb") as handle:
        while block := handle.read(block_bytes):
            cut = block.rfind(b"\n") + 1
            full = len(block) == block_bytes
            if b'"' in block or b"\r" in block.replace(b"\r\n", b"") or (full and not cut):
                handle.seek(handle.tell() - len(block))
                text = io.TextIOWrapper(
                    handle, encoding=dialect.encoding, errors="replace", newline=""
                )
                rows = csv.reader(text, delimiter=dialect.delimiter)
                try:
                    for line, row in enumerate(rows, records + 1):
                        if len(row) > width:
                            found[line] = len(row)
                except csv.Error:
                    pass  # pandas reports a file it cannot parse
                break
            if full:  # whole lines only; the rest starts the next block
                handle.seek(handle.tell() - len(block) + cut)
                block = block[:cut]
            data = np.frombuffer(block, dtype=np.uint8)
            ends = np.flatnonzero(data == 10)
            per_record = np.bincount(
                np.searchsorted(ends, np.flatnonzero(data == delimiter)), minlength=len(ends) + 1
            )
            if cut == len(block):  # nothing after the last newline
                per_record = per_record[:-1]
            for index in np.flatnonzero(per_record >= width):
                found[records + 1 + int(index)] = int(per_record[index]) + 1
            records += len(per_record)
    return found


def _line_of(position: int, first_line: int, skipped_lines: list[int]) -> int:
    """Physical line of the ``position``-th parsed row, given the lines pandas skipped."""
    line = first_line + position
    for skipped in skipped_lines:
        if skipped <= line:
            line += 1
        else:
            break
    return line


def read_chunks(
    path,
    dialect: Dialect,
    kind: str,
    mapping: dict[str, str],
    fields: list[Field],
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[Chunk]:
    """Yield validated chunks of the file. Raises IngestError if it cannot be read at all."""
    # Undecodable bytes become U+FFFD, and the rows holding them are rejected with a reason.
    utf8 = dialect.encoding.startswith("utf-8")
    mixed_encoding = utf8 and not is_valid_utf8(path)
    validator = ChunkValidator(kind, mapping, fields, check_encoding=mixed_encoding)
    unknown_columns = set(validator.mapping) - set(dialect.columns)
    if unknown_columns:
        raise IngestError(f"The mapping names columns the file does not have: {unknown_columns}.")
    first_line = 2 if dialect.has_header else 1
    too_long = long_records(path, dialect)
    long_lines = sorted(too_long)
    skipped_lines: list[int] = []
    seen = _DuplicateTracker(kind)
    position = 0
    encoding_errors = "replace" if utf8 else "strict"
    with open(path, "rb") as handle:
        reader = pd.read_csv(
            handle,
            encoding=dialect.encoding,
            encoding_errors=encoding_errors,
            sep=dialect.delimiter,
            header=0 if dialect.has_header else None,
            names=dialect.columns,
            # Arrow-backed strings: vectorised string checks in C, several times faster.
            dtype="string[pyarrow]",
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            on_bad_lines="warn",
            chunksize=chunk_rows,
            engine="c",
            # No usecols: with it the C parser never reports rows with too many fields.
            # index_col=False: a first row with too many fields must not turn the first
            # column into the index (and shift every row); long_records reports it.
            index_col=False,
        )
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    raw = next(reader)
                except StopIteration:
                    break
                except (pd.errors.ParserError, ValueError) as exc:
                    raise IngestError(f"The file could not be parsed: {exc}".strip()) from exc
            rejected = []
            for warning in caught:
                for match in _SKIPPED_LINE.finditer(str(warning.message)):
                    line, _, saw = (int(g) for g in match.groups())
                    skipped_lines.append(line)
                    rejected.append(_too_many_fields(line, saw, dialect))
            skipped_lines.sort()
            # Rows with too many fields that pandas kept (cut short): reject them too.
            long_rows = np.zeros(len(raw), dtype=bool)
            if long_lines and len(raw):
                first = _line_of(position, first_line, skipped_lines)
                last = _line_of(position + len(raw) - 1, first_line, skipped_lines)
                start = bisect.bisect_left(long_lines, first)
                end = bisect.bisect_right(long_lines, last)
                for line in long_lines[start:end]:
                    before = bisect.bisect_left(skipped_lines, line)
                    if before < len(skipped_lines) and skipped_lines[before] == line:
                        continue  # pandas skipped it; already rejected above
                    long_rows[line - first_line - before - position] = True
                    rejected.append(_too_many_fields(line, too_long[line], dialect))
            yield _validate_chunk(
                raw,
                validator,
                seen,
                position,
                first_line,
                skipped_lines,
                rejected,
                handle,
                long_rows,
            )
            position += len(raw)


def _too_many_fields(line: int, fields: int, dialect: Dialect) -> Rejection:
    return Rejection(line, "", f"has {fields} fields, expected {len(dialect.columns)}")


def _validate_chunk(
    raw, validator, seen, position, first_line, skipped_lines, rejected, handle, long_rows
):
    blank = (raw == "").all(axis=1).to_numpy(dtype=bool)
    frame, problems = validator.validate(raw, blank | long_rows)
    for row, column, reason, value in problems.found:
        rejected.append(
            Rejection(_line_of(position + row, first_line, skipped_lines), column, reason, value)
        )
    frame, duplicates, superseding = seen.drop(frame[~problems.bad])
    try:
        bytes_read = handle.tell()
    except (OSError, ValueError):
        bytes_read = 0
    rejected.sort(key=lambda r: r.line)
    return Chunk(
        frame=frame.reset_index(drop=True),
        rejected=rejected,
        rows_read=len(raw),
        blank_lines=int(blank.sum()),
        duplicates=duplicates,
        superseding=superseding,
        bytes_read=bytes_read,
    )


class _DuplicateTracker:
    """Finds rows seen before in the file.

    Interactions: identical rows are duplicates and dropped. Catalog kinds and relations:
    a repeated id (or edge) is counted, and the last row wins (it is applied later).
    """

    KEYS = {
        "interactions": None,
        "items": ["ITEM_ID"],
        "users": ["USER_ID"],
        "relations": ["FOLLOWER_ID", "FOLLOWEE_ID"],
    }

    def __init__(self, kind: str):
        self.kind = kind
        self.seen = np.empty(0, dtype=np.uint64)

    def drop(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
        """The rows to load, how many rows are duplicates, and how many kept rows repeat an
        id of an earlier chunk."""
        if frame.empty:
            return frame, 0, 0
        keys = self.KEYS[self.kind]
        hashes = pd.util.hash_pandas_object(
            frame if keys is None else frame[keys], index=False
        ).to_numpy()
        earlier = self._seen_before(hashes)
        superseding = 0
        if keys is None:
            repeated = pd.Series(hashes).duplicated(keep="first").to_numpy() | earlier
            kept = frame[~repeated]
        else:
            repeated = pd.Series(hashes).duplicated(keep="last").to_numpy()
            kept = frame[~repeated]
            superseding = int((earlier & ~repeated).sum())
            repeated = repeated | earlier
        # Merging two sorted runs is linear with a stable (tim)sort.
        self.seen = np.sort(np.concatenate([self.seen, np.sort(hashes)]), kind="stable")
        return kept, int(repeated.sum()), superseding

    def _seen_before(self, hashes: np.ndarray) -> np.ndarray:
        if not len(self.seen):
            return np.zeros(len(hashes), dtype=bool)
        positions = np.minimum(np.searchsorted(self.seen, hashes), len(self.seen) - 1)
        return self.seen[positions] == hashes
