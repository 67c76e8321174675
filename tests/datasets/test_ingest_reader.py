"""The Django-free CSV reading: sniffing, mapping suggestions, type inference and the chunked
validating reader. No database: every test writes a small file to tmp_path and reads it.

Line numbers in rejections are physical, 1-based lines of the file (the header is line 1).
"""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from datasets.ingest.errors import IngestError
from datasets.ingest.infer import fields_for_mapping, infer_type, suggest_mapping
from datasets.ingest.reader import CHUNK_ROWS, Rejection, attribute_records, read_chunks
from datasets.ingest.schema import Field, default_schema
from datasets.ingest.sniff import SAMPLE_BYTES, sniff_csv

INTERACTIONS_HEADER = "user_id,item_id,timestamp\n"


@dataclass
class Result:
    """Everything the reader produced for one file, chunks merged."""

    frame: pd.DataFrame
    rejected: list[Rejection]
    rows_read: int = 0
    blank_lines: int = 0
    duplicates: int = 0
    accepted: int = 0  # distinct rows the import would count as accepted
    chunks: int = 0
    mapping: dict = field(default_factory=dict)

    @property
    def rejected_lines(self) -> list[int]:
        return [r.line for r in self.rejected]

    def reason_for(self, line: int) -> str:
        return next(r.reason for r in self.rejected if r.line == line)


def write(tmp_path: Path, content: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_all(path, kind="interactions", *, mapping=None, fields=None, chunk_rows=CHUNK_ROWS):
    """Sniff the file, take the suggested mapping (or ``mapping``), and read every chunk."""
    dialect = sniff_csv(path)
    schema = default_schema(kind)
    if mapping is None:
        mapping = suggest_mapping(kind, dialect.columns, dialect.preview, schema)
    if fields is None:
        fields = fields_for_mapping(kind, dialect.columns, dialect.preview, mapping, schema)
    chunks = list(read_chunks(path, dialect, kind, mapping, fields, chunk_rows=chunk_rows))
    frames = [chunk.frame for chunk in chunks]
    return Result(
        frame=pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
        rejected=[r for chunk in chunks for r in chunk.rejected],
        rows_read=sum(chunk.rows_read for chunk in chunks),
        blank_lines=sum(chunk.blank_lines for chunk in chunks),
        duplicates=sum(chunk.duplicates for chunk in chunks),
        accepted=sum(len(chunk.frame) - chunk.superseding for chunk in chunks),
        chunks=len(chunks),
        mapping=mapping,
    )


def interactions(*rows: str) -> str:
    return INTERACTIONS_HEADER + "".join(f"{row}\n" for row in rows)


# --- encoding ---------------------------------------------------------------------------


def test_a_utf8_file_is_read_as_utf8_with_its_accents_intact(tmp_path):
    path = write(tmp_path, interactions("zoë,café,1700000000", "u2,i2,1700000001"))
    assert sniff_csv(path).encoding == "utf-8"
    result = read_all(path)
    assert result.frame["USER_ID"].tolist() == ["zoë", "u2"]
    assert result.frame["ITEM_ID"].tolist() == ["café", "i2"]


def test_a_utf8_bom_is_recognised_and_not_glued_to_the_first_column_name(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + interactions("u1,café,1700000000").encode())
    dialect = sniff_csv(path)
    assert dialect.encoding == "utf-8-sig"
    assert dialect.columns == ["user_id", "item_id", "timestamp"]
    assert read_all(path).frame["ITEM_ID"].tolist() == ["café"]


def test_a_latin1_file_is_recognised_and_decoded(tmp_path):
    path = write(
        tmp_path, interactions("u1,café,1700000000", "u2,crème,1700000001").encode("latin-1")
    )
    assert sniff_csv(path).encoding == "latin-1"
    result = read_all(path)
    assert result.frame["ITEM_ID"].tolist() == ["café", "crème"]
    assert result.rejected == []


def test_a_latin1_accent_in_the_very_last_bytes_still_makes_the_file_latin1(tmp_path):
    path = write(tmp_path, interactions("u1,i1,1700000000").encode() + "u2,é".encode("latin-1"))
    assert sniff_csv(path).encoding == "latin-1"


def test_a_utf16_file_is_refused_with_a_message_saying_how_to_fix_it(tmp_path):
    path = write(tmp_path, interactions("u1,i1,1700000000").encode("utf-16"))
    with pytest.raises(IngestError, match="UTF-16.*CSV UTF-8"):
        sniff_csv(path)


def test_one_latin1_row_in_a_utf8_file_is_rejected_and_the_rest_kept_intact(tmp_path):
    content = (
        interactions("u1,café,1700000000", "u2,naïve,1700000001").encode()
        + "u3,crème,1700000002\n".encode("latin-1")
        + b"u4,i4,1700000003\n"
    )
    path = write(tmp_path, content)
    assert sniff_csv(path).encoding == "utf-8"
    result = read_all(path)
    assert result.frame["ITEM_ID"].tolist() == ["café", "naïve", "i4"]
    assert result.rejected_lines == [4]
    assert result.rejected[0].column == "item_id"
    assert "UTF-8" in result.reason_for(4)


def test_a_latin1_row_beyond_the_sniffed_sample_is_rejected_with_its_line(tmp_path):
    rows = [f"u{i},i{i},{1_700_000_000 + i}" for i in range(SAMPLE_BYTES // 20)]
    content = interactions(*rows).encode() + "ux,crème,1700000000\n".encode("latin-1")
    path = write(tmp_path, content)
    assert sniff_csv(path).encoding == "utf-8"  # the sample is pure ASCII
    result = read_all(path)
    bad_line = len(rows) + 2
    assert result.rejected_lines == [bad_line]
    assert "UTF-8" in result.reason_for(bad_line)
    assert len(result.frame) == len(rows)


# --- delimiter and header ---------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_the_delimiter_is_detected(tmp_path, delimiter):
    rows = ["user_id", "item_id", "timestamp"], ["u1", "i1", "1700000000"], ["u2", "i2", "1"]
    path = write(tmp_path, "".join(delimiter.join(row) + "\n" for row in rows))
    dialect = sniff_csv(path)
    assert dialect.delimiter == delimiter
    assert dialect.columns == ["user_id", "item_id", "timestamp"]
    assert read_all(path).frame["USER_ID"].tolist() == ["u1", "u2"]


def test_pipes_inside_a_categorical_column_do_not_make_the_pipe_the_delimiter(tmp_path):
    path = write(
        tmp_path,
        "item_id,category,price\n"
        "i1,Shoes|Running|Sale,10\n"
        "i2,Books|Kids,12\n"
        "i3,Toys|Kids|Gifts|Sale,3\n",
    )
    dialect = sniff_csv(path)
    assert dialect.delimiter == ","
    assert dialect.columns == ["item_id", "category", "price"]


def test_a_header_row_is_detected(tmp_path):
    path = write(tmp_path, interactions("u1,i1,1700000000"))
    dialect = sniff_csv(path)
    assert dialect.has_header
    assert dialect.preview == [["u1", "i1", "1700000000"]]


def test_a_file_without_header_gets_numbered_columns_and_its_first_row_is_data(tmp_path):
    path = write(tmp_path, "u1,i1,1700000000\nu2,i2,oops\nu3,i3,1700000002\n")
    dialect = sniff_csv(path)
    assert not dialect.has_header
    assert dialect.columns == ["column_1", "column_2", "column_3"]
    mapping = {"column_1": "USER_ID", "column_2": "ITEM_ID", "column_3": "TIMESTAMP"}
    result = read_all(path, mapping=mapping)
    assert result.frame["USER_ID"].tolist() == ["u1", "u3"]
    assert result.rejected_lines == [2]  # no header: the first line is line 1


def test_an_empty_file_is_refused(tmp_path):
    with pytest.raises(IngestError, match="empty"):
        sniff_csv(write(tmp_path, ""))


def test_a_file_of_blank_lines_is_refused_as_empty(tmp_path):
    with pytest.raises(IngestError, match="empty"):
        sniff_csv(write(tmp_path, "\n\n  \n"))


def test_a_header_only_file_has_columns_but_yields_no_rows(tmp_path):
    path = write(tmp_path, INTERACTIONS_HEADER)
    dialect = sniff_csv(path)
    assert dialect.has_header
    assert dialect.columns == ["user_id", "item_id", "timestamp"]
    result = read_all(path)
    assert result.rows_read == 0
    assert result.frame.empty
    assert result.rejected == []


# --- inference and mapping suggestions --------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected_type", "multi"),
    [
        (["1.5", "20", "-3", "1e3"], "numeric", False),
        (["0", "1", "1"], "numeric", False),  # 0/1 columns are counts more often than flags
        (["true", "false", "TRUE"], "boolean", False),
        (["yes", "no", ""], "boolean", False),
        (["2024-05-01", "2024-05-01T12:00:00Z", "2024-05-01 12:00"], "timestamp", False),
        (["Shoes|Running", "Books", "Toys|Kids"], "categorical", True),
        (["A warm wool coat for winter", "Light running shoes for the summer"], "text", False),
        (["red", "blue", "green"], "categorical", False),
        (["", "  "], "categorical", False),
    ],
)
def test_attribute_column_types_are_inferred_from_sample_values(values, expected_type, multi):
    inferred = infer_type("some column", values)
    assert (inferred.type, inferred.multi) == (expected_type, multi)
    assert inferred.name == "SOME_COLUMN"


def test_inferred_field_names_are_valid_identifiers():
    assert infer_type("2nd price (€)", ["1"]).name == "F_2ND_PRICE"


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["userId", "product_id", "time"], ["USER_ID", "ITEM_ID", "TIMESTAMP"]),
        (
            ["customer", "SKU", "ts", "action", "rating"],
            ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"],
        ),
        (
            ["visitor_id", "article_id", "Event Time", "session"],
            ["USER_ID", "ITEM_ID", "TIMESTAMP", "SESSION_ID"],
        ),
    ],
)
def test_interaction_columns_are_mapped_from_common_synonyms(columns, expected):
    mapping = suggest_mapping("interactions", columns, [], default_schema("interactions"))
    assert list(mapping.values()) == expected


def test_unknown_interaction_columns_are_ignored_and_a_field_is_used_only_once():
    columns = ["user", "item", "time", "date", "colour"]
    mapping = suggest_mapping("interactions", columns, [], default_schema("interactions"))
    assert mapping == {
        "user": "USER_ID",
        "item": "ITEM_ID",
        "time": "TIMESTAMP",
        "date": "",  # TIMESTAMP is taken
        "colour": "",  # interactions have a fixed schema
    }


def test_item_columns_get_reserved_fields_and_new_attribute_fields():
    columns = ["product_id", "Category", "price", "in stock", "created"]
    preview = [["p1", "Shoes|Running", "9.99", "yes", "1700000000"]]
    schema = default_schema("items")
    mapping = suggest_mapping("items", columns, preview, schema)
    assert mapping == {
        "product_id": "ITEM_ID",
        "Category": "CATEGORY",
        "price": "PRICE",
        "in stock": "IN_STOCK",
        "created": "CREATION_TIMESTAMP",
    }
    fields = {f.name: f for f in fields_for_mapping("items", columns, preview, mapping, schema)}
    assert (fields["CATEGORY"].type, fields["CATEGORY"].multi) == ("categorical", True)
    assert fields["PRICE"].type == "numeric"
    assert fields["IN_STOCK"].type == "boolean"


def test_relation_columns_are_mapped_from_synonyms():
    mapping = suggest_mapping(
        "relations", ["from", "to", "strength"], [], default_schema("relations")
    )
    assert mapping == {"from": "FOLLOWER_ID", "to": "FOLLOWEE_ID", "strength": "WEIGHT"}


# --- required mapping -------------------------------------------------------------------


def test_reading_without_a_column_for_a_required_field_names_that_field(tmp_path):
    path = write(tmp_path, "user_id,item_id,when\nu1,i1,1700000000\n")
    dialect = sniff_csv(path)
    mapping = {"user_id": "USER_ID", "item_id": "ITEM_ID", "when": ""}
    with pytest.raises(IngestError, match="TIMESTAMP"):
        next(read_chunks(path, dialect, "interactions", mapping, default_schema("interactions")))


def test_a_mapping_naming_a_column_the_file_lacks_is_refused(tmp_path):
    path = write(tmp_path, interactions("u1,i1,1700000000"))
    mapping = {"user_id": "USER_ID", "item_id": "ITEM_ID", "time": "TIMESTAMP"}
    with pytest.raises(IngestError, match="time"):
        read_all(path, mapping=mapping)


# --- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1700000000", 1_700_000_000),
        ("1700000000.75", 1_700_000_000),
        ("1700000000123", 1_700_000_000),  # epoch milliseconds
        ("1700000000123456", 1_700_000_000),  # epoch microseconds
        ("0", 0),
        ("2024-05-01T12:00:00Z", 1_714_564_800),
        ("2024-05-01T14:00:00+02:00", 1_714_564_800),
        ("2024-05-01T08:00:00-04:00", 1_714_564_800),
        ("2024-05-01 12:00:00", 1_714_564_800),  # no offset: UTC
        ("2024-05-01", 1_714_521_600),
        ("2099-12-31T23:59:59Z", 4_102_444_799),
    ],
)
def test_timestamps_are_read_as_epoch_seconds(tmp_path, value, seconds):
    result = read_all(write(tmp_path, interactions(f"u1,i1,{value}")))
    assert result.rejected == []
    assert result.frame["TIMESTAMP"].tolist() == [seconds]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "is not a timestamp"),
        ("01/05/2024", "is not a timestamp"),
        ("2023-02-30", "is not a timestamp"),
        ("2024-13-01T00:00:00Z", "is not a timestamp"),
        ("NaN", "is not a timestamp"),
        ("-5", "before 1970 or after 2100"),
        ("1969-12-31T23:59:59Z", "before 1970 or after 2100"),
        ("2100-01-02T00:00:00Z", "before 1970 or after 2100"),
        ("5000000000", "before 1970 or after 2100"),
        ("", "TIMESTAMP is missing"),
    ],
)
def test_unusable_timestamps_reject_the_row_with_a_reason(tmp_path, value, reason):
    result = read_all(write(tmp_path, interactions(f"u1,i1,{value}", "u2,i2,1700000000")))
    assert result.frame["USER_ID"].tolist() == ["u2"]
    assert result.rejected_lines == [2]
    assert result.rejected[0].column == "timestamp"
    assert reason in result.reason_for(2)
    assert result.rejected[0].value == value


# --- numbers and booleans ---------------------------------------------------------------


def test_event_values_must_be_finite_and_not_negative(tmp_path):
    path = write(
        tmp_path,
        "user_id,item_id,timestamp,event_type,event_value\n"
        "u1,i1,1700000000,buy,2.5\n"
        "u1,i2,1700000000,buy,NaN\n"
        "u1,i3,1700000000,buy,inf\n"
        "u1,i4,1700000000,buy,-1\n"
        "u1,i5,1700000000,buy,ten\n"
        "u1,i6,1700000000,view,\n",
    )
    result = read_all(path)
    assert result.frame["ITEM_ID"].tolist() == ["i1", "i6"]
    assert result.frame["EVENT_VALUE"].tolist()[0] == 2.5
    assert pd.isna(result.frame["EVENT_VALUE"].tolist()[1])
    assert {r.line: r.reason for r in result.rejected} == {
        3: "EVENT_VALUE is not a finite number",
        4: "EVENT_VALUE is not a finite number",
        5: "EVENT_VALUE must not be negative",
        6: "EVENT_VALUE is not a finite number",
    }


ITEM_FIELDS = [
    *default_schema("items"),
    Field("PRICE", "numeric"),
    Field("IN_STOCK", "boolean"),
    Field("CATEGORY", "categorical", multi=True),
]
ITEM_MAPPING = {
    "item_id": "ITEM_ID",
    "price": "PRICE",
    "in_stock": "IN_STOCK",
    "category": "CATEGORY",
}


def read_items(tmp_path, *rows, chunk_rows=CHUNK_ROWS):
    path = write(tmp_path, "item_id,price,in_stock,category\n" + "".join(f"{r}\n" for r in rows))
    return read_all(path, "items", mapping=ITEM_MAPPING, fields=ITEM_FIELDS, chunk_rows=chunk_rows)


def test_negative_attribute_numbers_are_allowed_but_not_infinite_ones(tmp_path):
    result = read_items(tmp_path, "i1,-3.5,,", "i2,inf,,", "i3,NaN,,", "i4,1e2,,")
    assert result.frame["ITEM_ID"].tolist() == ["i1", "i4"]
    assert result.frame["PRICE"].tolist() == [-3.5, 100.0]
    assert result.rejected_lines == [3, 4]
    assert result.reason_for(3) == "PRICE is not a finite number"


def test_booleans_accept_the_usual_spellings_and_reject_others(tmp_path):
    spellings = ["true", "FALSE", "yes", "No", "y", "n", "1", "0", "T", "f", ""]
    rows = [f"i{n},1,{value}," for n, value in enumerate(spellings)] + ["bad,1,maybe,"]
    result = read_items(tmp_path, *rows)
    attributes = attribute_records(result.frame, ITEM_FIELDS[2:])
    assert [a.get("IN_STOCK") for a in attributes] == [
        True, False, True, False, True, False, True, False, True, False, None,
    ]  # fmt: skip
    assert result.rejected_lines == [len(spellings) + 2]
    assert "not a boolean" in result.rejected[0].reason


def test_attribute_values_become_json_types(tmp_path):
    result = read_items(tmp_path, "i1,9.99,yes,Shoes| Running |", "i2,,,")
    attributes = attribute_records(result.frame, ITEM_FIELDS[2:])
    assert attributes == [{"PRICE": 9.99, "IN_STOCK": True, "CATEGORY": ["Shoes", "Running"]}, {}]


# --- ids --------------------------------------------------------------------------------


def test_ids_up_to_256_characters_are_accepted_and_longer_ones_rejected(tmp_path):
    longest, too_long = "u" * 256, "u" * 257
    result = read_all(
        write(tmp_path, interactions(f"{longest},i1,1700000000", f"{too_long},i2,1700000000"))
    )
    assert result.frame["USER_ID"].tolist() == [longest]
    assert result.rejected_lines == [3]
    assert result.reason_for(3) == "USER_ID is longer than 256 characters"


def test_rows_without_a_required_id_are_rejected(tmp_path):
    result = read_all(write(tmp_path, interactions(",i1,1700000000", "u2,  ,1700000000")))
    assert result.frame.empty
    assert [(r.line, r.reason) for r in result.rejected] == [
        (2, "USER_ID is missing"),
        (3, "ITEM_ID is missing"),
    ]


# --- duplicates -------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [2, CHUNK_ROWS])
def test_identical_interactions_are_dropped_and_counted_also_across_chunks(tmp_path, chunk_rows):
    path = write(
        tmp_path,
        "user_id,item_id,timestamp,event_type\n"
        "u1,i1,1700000000,view\n"
        "u1,i1,1700000000,view\n"
        "u1,i1,1700000000,buy\n"  # another event type: not a duplicate
        "u1,i1,1700000000,view\n"
        "u2,i1,1700000000,view\n"
        "u1,i1,1700000000,view\n",
    )
    result = read_all(path, chunk_rows=chunk_rows)
    assert result.chunks == (3 if chunk_rows == 2 else 1)
    assert result.duplicates == 3
    assert result.frame[["USER_ID", "EVENT_TYPE"]].values.tolist() == [
        ["u1", "view"],
        ["u1", "buy"],
        ["u2", "view"],
    ]
    assert result.rejected == []


def test_a_repeated_item_id_is_counted_and_its_last_row_wins(tmp_path):
    result = read_items(tmp_path, "i1,10,yes,A", "i2,20,no,B", "i1,11,no,C")
    assert result.duplicates == 1
    assert result.accepted == 2
    rows = result.frame.set_index("ITEM_ID")
    assert rows.loc["i1", "PRICE"] == 11.0
    assert rows.loc["i1", "CATEGORY"] == "C"


def test_a_repeated_item_id_across_chunks_is_counted_once_as_accepted(tmp_path):
    result = read_items(tmp_path, "i1,10,yes,A", "i2,20,no,B", "i1,11,no,C", chunk_rows=1)
    assert result.duplicates == 1
    assert result.accepted == 2
    assert result.accepted + result.duplicates + len(result.rejected) == result.rows_read
    # Chunks are loaded in order, so the last row for i1 is the one that stays.
    last = result.frame[result.frame["ITEM_ID"] == "i1"].iloc[-1]
    assert last["PRICE"] == 11.0


# --- malformed rows and line numbers ----------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, CHUNK_ROWS])
def test_rows_with_too_many_fields_are_rejected_and_later_line_numbers_stay_right(
    tmp_path, chunk_rows
):
    path = write(
        tmp_path,
        interactions(
            "u1,i1,1700000000",  # line 2
            "u2,i2,1700000001,extra",  # line 3: too many fields
            "u3,i3,1700000002",  # line 4
            "u4,i4,1700000003,a,b",  # line 5: too many fields
            "u5,i5,not-a-time",  # line 6
            "u6,i6,1700000005",  # line 7
        ),
    )
    result = read_all(path, chunk_rows=chunk_rows)
    assert result.frame["USER_ID"].tolist() == ["u1", "u3", "u6"]
    assert [(r.line, r.reason) for r in result.rejected] == [
        (3, "has 4 fields, expected 3"),
        (5, "has 5 fields, expected 3"),
        (6, result.reason_for(6)),
    ]
    assert "not a timestamp" in result.reason_for(6)


def test_a_first_data_row_with_too_many_fields_does_not_shift_the_other_rows(tmp_path):
    path = write(tmp_path, interactions("u1,i1,1700000000,extra", "u2,i2,1700000001"))
    result = read_all(path)
    assert result.frame[["USER_ID", "ITEM_ID", "TIMESTAMP"]].values.tolist() == [
        ["u2", "i2", 1_700_000_001]
    ]
    assert [(r.line, r.reason) for r in result.rejected] == [(2, "has 4 fields, expected 3")]


def test_too_many_fields_are_found_in_every_chunk_of_a_longer_file(tmp_path):
    rows = [f"u{i},i{i},{1_700_000_000 + i}" for i in range(2_000)]
    long_rows = {0, 1, 499, 500, 501, 999, 1000, 1500, 1999}
    for index in long_rows:
        rows[index] += ",x"
    result = read_all(write(tmp_path, interactions(*rows)), chunk_rows=500)
    assert sorted(result.rejected_lines) == sorted(index + 2 for index in long_rows)
    assert len(result.frame) == len(rows) - len(long_rows)


def test_quoted_delimiters_do_not_count_as_extra_fields(tmp_path):
    path = write(
        tmp_path,
        'item_id,price,in_stock,category\ni1,1,yes,"Shoes, Running"\ni2,2,no,5" screen\n',
    )
    result = read_all(path, "items", mapping=ITEM_MAPPING, fields=ITEM_FIELDS)
    assert result.rejected == []
    assert result.frame["CATEGORY"].tolist() == ["Shoes, Running", '5" screen']


def test_windows_line_endings_are_read_like_unix_ones(tmp_path):
    path = write(
        tmp_path,
        'user_id,item_id,timestamp\r\nu1,"i1, x",1700000000\r\nu2,i2,1700000001,x\r\n'
        "\r\nu3,i3,bad\r\nu4,i4,1700000004\r\n",
    )
    result = read_all(path, chunk_rows=1)
    assert result.frame["ITEM_ID"].tolist() == ["i1, x", "i4"]
    assert result.frame["TIMESTAMP"].tolist() == [1_700_000_000, 1_700_000_004]
    assert result.rejected_lines == [3, 5]
    assert result.blank_lines == 1


def test_blank_lines_are_skipped_and_counted_but_not_rejected(tmp_path):
    path = write(
        tmp_path,
        INTERACTIONS_HEADER + "u1,i1,1700000000\n\n\nu2,i2,oops\n\nu3,i3,1700000002\n",
    )
    result = read_all(path)
    assert result.frame["USER_ID"].tolist() == ["u1", "u3"]
    assert result.blank_lines == 3
    assert result.rejected_lines == [5]


def test_a_file_cut_off_mid_line_rejects_only_the_incomplete_last_row(tmp_path):
    path = write(tmp_path, INTERACTIONS_HEADER + "u1,i1,1700000000\nu2,i2,1700000001\nu3,i")
    result = read_all(path)
    assert result.frame["USER_ID"].tolist() == ["u1", "u2"]
    assert [(r.line, r.reason) for r in result.rejected] == [(4, "TIMESTAMP is missing")]


@pytest.mark.parametrize("chunk_rows", [1, 2, CHUNK_ROWS])
def test_line_numbers_are_physical_lines_whatever_the_chunk_size(tmp_path, chunk_rows):
    rows = ["u1,i1,1700000000", "", "u2,,1700000000", "u3,i3,1700000000,x", "u4,i4,bad", ""]
    rows += ["u5,i5,1700000000", "u6,i6"]
    result = read_all(write(tmp_path, interactions(*rows)), chunk_rows=chunk_rows)
    assert result.rejected_lines == [4, 5, 6, 9]
    assert result.frame["USER_ID"].tolist() == ["u1", "u5"]
    assert result.blank_lines == 2


# --- relations --------------------------------------------------------------------------


def test_a_user_following_themselves_is_rejected(tmp_path):
    path = write(tmp_path, "follower,followee,weight\nu1,u2,1\nu3,u3,1\nu2,u1,0.5\n")
    result = read_all(path, "relations")
    assert result.frame[["FOLLOWER_ID", "FOLLOWEE_ID"]].values.tolist() == [
        ["u1", "u2"],
        ["u2", "u1"],
    ]
    assert [(r.line, r.column, r.reason) for r in result.rejected] == [
        (3, "follower", "a user cannot follow themselves")
    ]


def test_negative_relation_weights_are_rejected(tmp_path):
    result = read_all(write(tmp_path, "follower,followee,weight\nu1,u2,-1\n"), "relations")
    assert result.frame.empty
    assert result.rejected[0].reason == "WEIGHT must not be negative"
