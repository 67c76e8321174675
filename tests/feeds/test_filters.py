"""The filter expression language (feeds/engine): grammar, errors, parameters, evaluation.

Plain pytest, no database: the engine is Django-free.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.ingest.schema import Field as SchemaField
from feeds.engine.filters import (
    MAX_EXPRESSION_LENGTH,
    MAX_IN_VALUES,
    MAX_NESTING,
    MAX_STATEMENTS,
    BoolOp,
    Comparison,
    CurrentItemRef,
    Field,
    FilterError,
    FilterExpression,
    FilterParameterError,
    FilterSemanticError,
    FilterSyntaxError,
    ItemTable,
    Literal,
    Param,
    Statement,
    UserInteractions,
    bind,
    compile_filter,
    parameter_literals,
    parse,
    render,
)


def where(text: str):
    """The condition of a one-statement INCLUDE filter."""
    return parse(f"INCLUDE ItemID WHERE {text}").statements[0].condition


def cmp(field: str, op: str, *values) -> Comparison:
    dataset, name = field.split(".")
    return Comparison(Field(dataset, name), op, tuple(values))


def s(value: str) -> Literal:
    return Literal("string", value)


def num(value) -> Literal:
    return Literal("number", value)


# --------------------------------------------------------------------------- grammar


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_each_comparison_operator_parses(op):
    assert where(f"Items.price {op} 20") == cmp("Items.price", op, num(20))


def test_in_and_not_in_take_value_lists_of_every_kind():
    node = where('Items.category IN ("Shoes", 42, -1.5, 2e3, true, FALSE, $CATS, CurrentItem.kind)')
    assert node == cmp(
        "Items.category",
        "IN",
        s("Shoes"),
        num(42),
        num(-1.5),
        num(2000.0),
        Literal("boolean", True),
        Literal("boolean", False),
        Param("CATS"),
        CurrentItemRef("kind"),
    )
    assert where('Items.category NOT IN ("a")') == cmp("Items.category", "NOT IN", s("a"))


def test_operator_aliases_and_string_escapes():
    assert where("Items.a <> 1") == cmp("Items.a", "!=", num(1))
    assert where("Items.a == 1") == cmp("Items.a", "=", num(1))
    assert where(r'Items.a = "say \"hi\" \\ bye"') == cmp("Items.a", "=", s('say "hi" \\ bye'))


def test_and_binds_tighter_than_or():
    a, b, c = (cmp(f"Items.{x}", "=", num(1)) for x in "abc")
    assert where("Items.a = 1 OR Items.b = 1 AND Items.c = 1") == BoolOp(
        "OR", (a, BoolOp("AND", (b, c)))
    )
    assert where("Items.a = 1 AND Items.b = 1 OR Items.c = 1") == BoolOp(
        "OR", (BoolOp("AND", (a, b)), c)
    )
    assert where("(Items.a = 1 OR Items.b = 1) AND Items.c = 1") == BoolOp(
        "AND", (BoolOp("OR", (a, b)), c)
    )


def test_chains_are_flattened_and_redundant_parentheses_vanish():
    a, b, c = (cmp(f"Items.{x}", "=", num(1)) for x in "abc")
    flat = BoolOp("AND", (a, b, c))
    assert where("Items.a = 1 AND (Items.b = 1 AND Items.c = 1)") == flat
    assert where("((Items.a = 1) AND Items.b = 1) AND ((Items.c = 1))") == flat


def test_pipe_joins_statements_and_keywords_are_case_insensitive():
    ast = parse(
        'include itemid where items.category in ("x") | Exclude ItemId Where '
        'INTERACTIONS.EVENT_TYPE in ("purchase")|EXCLUDE ItemID WHERE Items.in_stock = false'
    )
    assert [st.action for st in ast.statements] == ["INCLUDE", "EXCLUDE", "EXCLUDE"]
    assert ast.statements[0].condition == cmp("Items.category", "IN", s("x"))
    assert ast.statements[1].condition.field == Field("Interactions", "EVENT_TYPE")


def test_users_conditions_in_where_and_personalize_if_clause():
    ast = parse(
        'EXCLUDE ItemID WHERE Items.rating IN ("adult") AND Users.age < 18 '
        '| INCLUDE ItemID WHERE Items.kind = "toy" IF CurrentUser.age < 12 AND Users.kids = true'
    )
    first, second = ast.statements
    assert first.condition.operands[1] == cmp("Users.age", "<", num(18))
    assert second.guard == (
        cmp("Users.age", "<", num(12)),
        cmp("Users.kids", "=", Literal("boolean", True)),
    )


def test_render_is_canonical_and_round_trips():
    text = (
        'include ItemID where (items.a = 1 or ITEMS.b != "x") and Items.c in ($P, CurrentItem.c) '
        'if currentuser.age >= 18 | exclude itemid where interactions.event_type not in ("*")'
    )
    canonical = (
        'INCLUDE ItemID WHERE (Items.a = 1 OR Items.b != "x") AND Items.c IN ($P, CurrentItem.c) '
        'IF Users.age >= 18 | EXCLUDE ItemID WHERE Interactions.event_type NOT IN ("*")'
    )
    assert render(parse(text)) == canonical
    assert parse(canonical) == parse(text)


def test_parameters_are_listed_in_order_of_first_use():
    flt = compile_filter(
        "INCLUDE ItemID WHERE Items.c IN ($CATS, $MORE) AND Items.p < $MAX "
        "| EXCLUDE ItemID WHERE Items.c IN ($CATS)"
    )
    assert flt.parameters == ("CATS", "MORE", "MAX")


# --------------------------------------------------------------------------- syntax errors


def syntax_error(text: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    return info.value


def test_misspelled_operator_says_what_was_expected_where():
    text = 'INCLUDE ItemID WHERE Items.category INN ("Shoes")'
    error = syntax_error(text)
    assert error.position == 36
    assert error.found == "INN"
    assert error.expected == ("IN", "NOT IN", "=", "!=", "<", "<=", ">", ">=")
    assert str(error) == (
        'Expected "IN", "NOT IN", "=", "!=", "<", "<=", ">" or ">=" after Items.category '
        'at position 36 (found "INN")'
    )
    assert error.pointer(text) == (
        'INCLUDE ItemID WHERE Items.category INN ("Shoes")\n' + " " * 36 + "^"
    )
    assert error.to_dict()["position"] == 36


@pytest.mark.parametrize(
    ("text", "position", "expected", "found"),
    [
        ("", 0, ("INCLUDE", "EXCLUDE"), None),
        ("DELETE ItemID WHERE Items.a = 1", 0, ("INCLUDE", "EXCLUDE"), "DELETE"),
        ("INCLUDE WHERE Items.a = 1", 8, ("ItemID",), "WHERE"),
        ("INCLUDE UserID WHERE Items.a = 1", 8, ("ItemID",), "UserID"),
        ("INCLUDE ItemID Items.a = 1", 15, ("WHERE",), "Items"),
        (
            "INCLUDE ItemID WHERE",
            20,
            ("Items.<field>", "Interactions.<field>", "Users.<field>", "("),
            None,
        ),
        (
            "INCLUDE ItemID WHERE Itemz.a = 1",
            21,
            ("Items.<field>", "Interactions.<field>", "Users.<field>", "("),
            "Itemz",
        ),
        ("INCLUDE ItemID WHERE Items a = 1", 27, (".",), "a"),
        ("INCLUDE ItemID WHERE Items. = 1", 28, ("<Items field>",), "="),
        ("INCLUDE ItemID WHERE Items.a = ", 31, None, None),
        ("INCLUDE ItemID WHERE Items.a = category", 31, None, "category"),
        ('INCLUDE ItemID WHERE Items.a IN "x"', 32, ("(",), '"x"'),
        ("INCLUDE ItemID WHERE Items.a IN ()", 33, None, ")"),
        ('INCLUDE ItemID WHERE Items.a IN ("x" "y")', 37, (",", ")"), '"y"'),
        ('INCLUDE ItemID WHERE Items.a NOT ("x")', 33, ("IN",), "("),
        ("INCLUDE ItemID WHERE (Items.a = 1", 33, ("AND", "OR", ")"), None),
        ("INCLUDE ItemID WHERE Items.a = 1 |", 34, ("INCLUDE", "EXCLUDE"), None),
        (
            "INCLUDE ItemID WHERE Items.a = 1 Items.b = 2",
            33,
            ("AND", "OR", "IF", "|", "<end of expression>"),
            "Items",
        ),
        ("INCLUDE ItemID WHERE Items.a = $", 32, ("<parameter name>",), None),
        ("INCLUDE ItemID WHERE Items.a = 1 # comment", 33, None, "#"),
        ("INCLUDE ItemID WHERE Items.a = 'x'", 31, ('"',), "'"),
        ('INCLUDE ItemID WHERE Items.a = "open', 36, ('"',), None),
        ("INCLUDE ItemID WHERE Items.a ! 1", 29, ("!=",), "!"),
        ("INCLUDE ItemID WHERE CurrentItem.a = 1", 21, None, "CurrentItem"),
    ],
)
def test_syntax_errors_point_at_the_mistake(text, position, expected, found):
    error = syntax_error(text)
    assert error.position == position, str(error)
    assert error.found == found
    if expected is not None:
        assert error.expected == expected
    assert f"position {position}" in str(error)
    assert error.pointer(text).splitlines()[-1] == " " * position + "^"


def test_pointer_shows_the_line_of_a_multiline_expression():
    text = 'INCLUDE ItemID WHERE Items.a = 1\n\t| EXCLUDE ItemID WHERE Items.b INN ("x")'
    error = syntax_error(text)
    assert error.pointer(text) == '\t| EXCLUDE ItemID WHERE Items.b INN ("x")\n\t' + " " * 31 + "^"


def test_limits_on_length_values_statements_and_nesting():
    long_text = 'INCLUDE ItemID WHERE Items.a IN ("' + "x" * MAX_EXPRESSION_LENGTH + '")'
    error = syntax_error(long_text)
    assert error.position == MAX_EXPRESSION_LENGTH
    assert f"limit is {MAX_EXPRESSION_LENGTH:,}" in str(error)

    values = ", ".join(["1"] * (MAX_IN_VALUES + 1))
    error = syntax_error(f"INCLUDE ItemID WHERE Items.a IN ({values})")
    assert f"at most {MAX_IN_VALUES}" in str(error)
    parse(f"INCLUDE ItemID WHERE Items.a IN ({values.rsplit(',', 1)[0]})")  # exactly the limit

    statement = "EXCLUDE ItemID WHERE Items.a = 1"
    error = syntax_error(" | ".join([statement] * (MAX_STATEMENTS + 1)))
    assert f"at most {MAX_STATEMENTS}" in str(error)
    assert len(parse(" | ".join([statement] * MAX_STATEMENTS)).statements) == MAX_STATEMENTS

    deep = (
        "INCLUDE ItemID WHERE " + "(" * (MAX_NESTING + 1) + "Items.a = 1" + ")" * (MAX_NESTING + 1)
    )
    error = syntax_error(deep)
    assert error.position == len("INCLUDE ItemID WHERE ") + MAX_NESTING
    assert "nested too deeply" in str(error)
    ok = "INCLUDE ItemID WHERE " + "(" * MAX_NESTING + "Items.a = 1" + ")" * MAX_NESTING
    assert parse(ok).statements[0].condition == cmp("Items.a", "=", num(1))


# --------------------------------------------------------------------------- semantic errors

SCHEMA = {
    "items": [
        SchemaField("ITEM_ID", "id", required=True),
        SchemaField("category", "categorical"),
        SchemaField("tags", "categorical", multi=True),
        SchemaField("price", "numeric"),
        SchemaField("in_stock", "boolean"),
        SchemaField("launched", "timestamp"),
    ],
    "users": {"age": "numeric", "segment": "categorical"},
}


def semantic_error(text: str, schema=SCHEMA) -> FilterSemanticError:
    with pytest.raises(FilterSemanticError) as info:
        compile_filter(text, schema=schema)
    return info.value


def test_unknown_item_field_with_a_schema_lists_the_fields():
    error = semantic_error('INCLUDE ItemID WHERE Items.colour IN ("red")')
    assert error.position == 21
    assert error.found == "colour"
    assert "category" in error.expected and "price" in error.expected
    assert str(error).startswith("Unknown field Items.colour at position 21; the catalogue has")


def test_unknown_interactions_field_is_reported_even_without_a_schema():
    error = semantic_error('EXCLUDE ItemID WHERE Interactions.event IN ("x")', schema=None)
    assert error.position == 21
    assert error.expected == ("EVENT_TYPE", "EVENT_VALUE", "TIMESTAMP")


@pytest.mark.parametrize(
    ("text", "position", "needle"),
    [
        ('INCLUDE ItemID WHERE Items.category < "m"', 36, '"<" needs a numeric field'),
        ('INCLUDE ItemID WHERE Items.tags >= "a"', 32, "holds a list of values"),
        ("INCLUDE ItemID WHERE Items.in_stock > false", 36, "holds true or false"),
        ('EXCLUDE ItemID WHERE Interactions.event_type > "a"', 45, "numeric field"),
        ('INCLUDE ItemID WHERE Items.price < "cheap"', 35, 'needs a number; found "cheap"'),
        ("INCLUDE ItemID WHERE Items.price = true", 35, "needs a number"),
        ('INCLUDE ItemID WHERE Items.in_stock = "maybe"', 38, "needs true or false"),
        ('INCLUDE ItemID WHERE Items.launched > "yesterday"', 38, "an ISO date"),
        ('EXCLUDE ItemID WHERE Interactions.timestamp > "soon"', 46, "an ISO date"),
        ("INCLUDE ItemID WHERE Items.category IN (CurrentItem.colour)", 40, "Items.colour"),
        (
            'INCLUDE ItemID WHERE Items.category = "a" AND Interactions.event_type = "x"',
            46,
            "mixes Interactions with Items",
        ),
        ('INCLUDE ItemID WHERE Items.category = "a" OR Users.age > 3', 45, "join it with AND"),
        ("EXCLUDE ItemID WHERE Users.age < 18", 0, "only tests Users fields"),
        ('INCLUDE ItemID WHERE Items.category = "a" IF Items.price > 3', 45, "After IF"),
        ('INCLUDE ItemID WHERE Items.category = "a" AND Users.height > 3', 46, "Users.height"),
    ],
)
def test_semantic_errors_have_positions(text, position, needle):
    error = semantic_error(text)
    assert error.position == position, str(error)
    assert needle in str(error)
    assert f"position {position}" in str(error)


def test_literals_of_the_right_type_are_accepted():
    compile_filter(
        'INCLUDE ItemID WHERE Items.price < "19.5" AND Items.in_stock = "True" '
        'AND Items.launched > "2024-01-01T00:00:00Z" AND Items.category IN (42, true)',
        schema=SCHEMA,
    )


# --------------------------------------------------------------------------- parameters


def test_parameter_values_as_lists_personalize_strings_and_plain_text():
    assert parameter_literals("C", ["Shoes", "Bags"]) == (s("Shoes"), s("Bags"))
    assert parameter_literals("C", '"Shoes","Bags"') == (s("Shoes"), s("Bags"))
    assert parameter_literals("C", '"a, b", 3, true') == (
        s("a, b"),
        num(3),
        Literal("boolean", True),
    )
    assert parameter_literals("C", "Shoes, Bags") == (s("Shoes"), s("Bags"))
    assert parameter_literals("C", "20") == (num(20),)
    assert parameter_literals("C", 20.5) == (num(20.5),)
    assert parameter_literals("C", "") == ()
    with pytest.raises(FilterParameterError, match=r"\$C holds a dict"):
        parameter_literals("C", {"a": 1})


def test_bind_fills_parameters_and_keeps_the_rest():
    ast = parse('INCLUDE ItemID WHERE Items.c IN ($CATS, "x") AND Items.p < $MAX')
    bound = bind(ast, {"CATS": '"a","b"', "max": "20", "UNUSED": "1"})
    assert bound == parse('INCLUDE ItemID WHERE Items.c IN ("a", "b", "x") AND Items.p < 20')
    assert ast.parameters() == ("CATS", "MAX")  # the original is unchanged
    assert render(bound) == 'INCLUDE ItemID WHERE Items.c IN ("a", "b", "x") AND Items.p < 20'


def test_missing_parameter_names_it_and_its_position():
    ast = parse("INCLUDE ItemID WHERE Items.c IN ($CATS)")
    with pytest.raises(FilterParameterError) as info:
        bind(ast, {"OTHER": "x"})
    assert info.value.position == 33
    assert str(info.value).startswith("No value for parameter $CATS (used at position 33)")
    assert "filter_values" in str(info.value)


def test_single_valued_operator_rejects_a_list_parameter():
    with pytest.raises(FilterParameterError, match=r"\$MAX must be a single value"):
        bind(parse("INCLUDE ItemID WHERE Items.p < $MAX"), {"MAX": [1, 2]})


def test_too_many_values_after_binding():
    with pytest.raises(FilterParameterError, match=f"the limit is {MAX_IN_VALUES}"):
        bind(parse("INCLUDE ItemID WHERE Items.c IN ($C)"), {"C": list(range(MAX_IN_VALUES + 1))})


# --------------------------------------------------------------------------- evaluation

T0 = 1_700_000_000  # epoch seconds
COLUMNS = {
    #               0        1       2        3      4       5
    "category": ["Shoes", "Bags", "Shoes", "Hats", None, "shoes"],
    "price": [10.0, 60.0, 30.0, math.nan, 5.0, 20.0],
    "in_stock": [True, True, False, True, None, True],
    "brand": ["Acme", "Bolt", None, "Acme", "Cobra", ""],
    "tags": [["red", "sale"], ["blue"], [], None, ["sale"], ["red"]],
    "size": ["42", "38", "42", None, "40", "44"],
    "launched": np.array(
        ["2024-01-01", "2024-06-01", "NaT", "2023-01-01", "2024-03-01", "2025-01-01"],
        dtype="datetime64[s]",
    ),
}


@pytest.fixture(scope="module")
def table():
    return ItemTable(COLUMNS)


def allowed(expression, table, **kwargs) -> list[int]:
    return np.flatnonzero(compile_filter(expression).mask(table, **kwargs)).tolist()


@pytest.mark.parametrize(
    ("condition", "rows"),
    [
        ('Items.category IN ("Shoes")', [0, 2]),  # case-sensitive: "shoes" is another value
        ('Items.category IN ("Shoes", "Hats")', [0, 2, 3]),
        ('Items.category = "Bags"', [1]),
        ('Items.category NOT IN ("Shoes")', [1, 3, 5]),  # missing never matches, even NOT IN
        ('Items.category != "Shoes"', [1, 3, 5]),
        ('Items.category IN ("Boots")', []),
        ("Items.price < 20", [0, 4]),
        ("Items.price <= 20", [0, 4, 5]),
        ("Items.price > 20", [1, 2]),
        ("Items.price >= 30", [1, 2]),
        ("Items.price = 30", [2]),
        ("Items.price != 30", [0, 1, 4, 5]),  # NaN price of item 3 never matches
        ('Items.price < "20"', [0, 4]),  # text compared as a number on a numeric column
        ("Items.price IN (10, 20)", [0, 5]),
        ("Items.price NOT IN (10, 20)", [1, 2, 4]),
        ("Items.in_stock = true", [0, 1, 3, 5]),
        ("Items.in_stock = false", [2]),
        ("Items.in_stock != true", [2]),  # item 4 has no value
        ('Items.in_stock IN ("false", true)', [0, 1, 2, 3, 5]),
        ('Items.brand = "Acme"', [0, 3]),
        ('Items.brand != "Acme"', [1, 4]),  # None and "" are missing
        ('Items.tags IN ("sale")', [0, 4]),  # lists: any value matches
        ('Items.tags = "red"', [0, 5]),
        ('Items.tags NOT IN ("red")', [1, 4]),  # empty and missing lists never match
        ("Items.size = 42", [0, 2]),  # a number compared with a text column as text
        ('Items.launched >= "2024-03-01"', [1, 4, 5]),
        (f"Items.launched < {T0}", [3]),  # T0 is in November 2023
        ('Items.category = "Shoes" AND Items.price > 15', [2]),
        ('Items.category = "Bags" OR Items.price < 8', [1, 4]),
        ('Items.category = "Hats" OR Items.category = "Shoes" AND Items.price < 20', [0, 3]),
        ('(Items.category = "Hats" OR Items.category = "Shoes") AND Items.price < 20', [0]),
    ],
)
def test_items_conditions(table, condition, rows):
    assert allowed(f"INCLUDE ItemID WHERE {condition}", table) == rows


def test_exclude_removes_and_include_restricts(table):
    assert allowed("EXCLUDE ItemID WHERE Items.in_stock = false", table) == [0, 1, 3, 4, 5]
    assert allowed('INCLUDE ItemID WHERE Items.category IN ("Shoes")', table) == [0, 2]


def test_includes_union_and_excludes_subtract_in_any_order(table):
    expected = [0, 1]  # (Shoes or Bags) minus out of stock
    text = (
        'INCLUDE ItemID WHERE Items.category = "Shoes" | INCLUDE ItemID WHERE Items.category = '
        '"Bags" | EXCLUDE ItemID WHERE Items.in_stock = false'
    )
    assert allowed(text, table) == expected
    reordered = " | ".join(reversed(text.split(" | ")))
    assert allowed(reordered, table) == expected


def test_field_names_match_columns_in_any_case(table):
    assert allowed('INCLUDE ItemID WHERE ITEMS.Category IN ("Bags")', table) == [1]


def test_parameters_at_evaluation(table):
    text = "INCLUDE ItemID WHERE Items.category IN ($CATS) AND Items.price < $MAX"
    flt = compile_filter(text)
    mask = flt.mask(table, values={"CATS": '"Shoes","Bags"', "MAX": "50"})
    assert np.flatnonzero(mask).tolist() == [0, 2]
    mask = flt.mask(table, values={"cats": ["Bags"], "max": 100})
    assert np.flatnonzero(mask).tolist() == [1]
    with pytest.raises(FilterParameterError, match=r"No value for parameter \$MAX"):
        flt.mask(table, values={"CATS": "Shoes"})
    with pytest.raises(FilterParameterError) as info:
        flt.mask(table, values={"CATS": "Shoes", "MAX": "cheap"})
    assert info.value.position == text.index("$MAX")
    assert 'Parameter $MAX is "cheap", but Items.price needs a number' in str(info.value)


def test_unknown_column_or_wrong_operator_at_evaluation_without_schema(table):
    flt = compile_filter('INCLUDE ItemID WHERE Items.colour = "red"')
    with pytest.raises(FilterSemanticError) as info:
        flt.mask(table)
    assert info.value.position == 21
    assert "category" in info.value.expected
    with pytest.raises(FilterSemanticError, match="holds text"):
        compile_filter('INCLUDE ItemID WHERE Items.category > "a"').mask(table)


def test_schema_decides_column_kinds():
    records = [{"price": "12.5", "flag": "yes", "tags": "a|b"}, {"price": "7", "tags": "b"}]
    table = ItemTable.from_records(
        records,
        schema={
            "items": {
                "price": "numeric",
                "flag": "boolean",
                "tags": {"type": "categorical", "multi": True},
            }
        },
    )
    assert allowed("INCLUDE ItemID WHERE Items.price > 10", table) == [0]
    assert allowed("INCLUDE ItemID WHERE Items.flag = true", table) == [0]
    assert allowed('INCLUDE ItemID WHERE Items.tags IN ("b")', table) == [0, 1]
    assert allowed('INCLUDE ItemID WHERE Items.tags = "a"', table) == [0]


def test_plain_dict_of_columns_is_accepted(table):
    flt = compile_filter("INCLUDE ItemID WHERE Items.price > 25")
    assert np.flatnonzero(flt.mask(COLUMNS)).tolist() == [1, 2]
    with pytest.raises(ValueError, match="different lengths"):
        ItemTable({"a": [1, 2], "b": [1]})


# ---- interactions

HISTORY = UserInteractions(
    item_rows=np.array([0, 1, 1, 2, 3, -1]),
    event_types=np.array(["view", "Purchase", "view", "cart", None, "purchase"], dtype=object),
    timestamps=np.array([T0 - 86400 * 30, T0, T0 - 10, T0 + 5, T0, T0]),
    event_values=np.array([1.0, 99.0, 1.0, 20.0, math.nan, 5.0]),
)


def test_already_purchased_items_are_excluded_case_insensitively(table):
    text = 'EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase")'
    assert allowed(text, table, interactions=HISTORY) == [0, 2, 3, 4, 5]


def test_star_matches_any_event_type(table):
    text = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'
    assert allowed(text, table, interactions=HISTORY) == [4, 5]


def test_one_event_must_satisfy_the_whole_interactions_condition(table):
    # Item 1 was viewed 10 s before T0 and bought at T0; item 0 was viewed a month earlier.
    text = (
        'EXCLUDE ItemID WHERE Interactions.event_type = "view" AND Interactions.timestamp > $SINCE'
    )
    assert allowed(text, table, interactions=HISTORY, values={"SINCE": T0 - 3600}) == [
        0,
        2,
        3,
        4,
        5,
    ]
    text = (
        'INCLUDE ItemID WHERE Interactions.event_type = "purchase" '
        'AND Interactions.event_value >= 50 OR Interactions.event_type = "cart"'
    )
    assert allowed(text, table, interactions=HISTORY) == [1, 2]


def test_interactions_accept_a_dict_and_no_history(table):
    text = 'EXCLUDE ItemID WHERE Interactions.event_type IN ("view")'
    history = {"item_rows": np.array([4]), "event_types": np.array(["VIEW"])}
    assert allowed(text, table, interactions=history) == [0, 1, 2, 3, 5]
    assert allowed(text, table) == [0, 1, 2, 3, 4, 5]
    include = 'INCLUDE ItemID WHERE Interactions.event_type IN ("favorite")'
    assert allowed(include, table) == []  # nothing favourited: nothing to include


def test_interactions_and_items_combined_with_pipe(table):
    text = (
        'INCLUDE ItemID WHERE Items.category IN ("Shoes", "Bags") '
        '| EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase", "cart")'
    )
    assert allowed(text, table, interactions=HISTORY) == [0]


# ---- users and the current item


def test_users_condition_decides_whether_a_statement_applies(table):
    text = 'EXCLUDE ItemID WHERE Items.category = "Hats" AND Users.age < 18'
    assert allowed(text, table, user={"age": 12}) == [0, 1, 2, 4, 5]
    assert allowed(text, table, user={"AGE": "30"}) == [0, 1, 2, 3, 4, 5]
    assert allowed(text, table, user={}) == [0, 1, 2, 3, 4, 5]  # missing never matches
    assert allowed(text, table) == [0, 1, 2, 3, 4, 5]


def test_if_clause_and_list_valued_user_fields(table):
    text = (
        'INCLUDE ItemID WHERE Items.category = "Bags" '
        'IF CurrentUser.segments IN ("vip") AND Users.country = "DE"'
    )
    assert allowed(text, table, user={"segments": ["vip", "new"], "country": "DE"}) == [1]
    everything = [0, 1, 2, 3, 4, 5]
    assert allowed(text, table, user={"segments": ["new"], "country": "DE"}) == everything
    assert allowed(text, table, user={"segments": ["vip"], "country": "FR"}) == everything


def test_a_promotion_whose_includes_are_all_skipped_matches_nothing(table):
    """Promotions pick items: for a user no INCLUDE applies to, nothing is promoted."""
    text = (
        'INCLUDE ItemID WHERE Items.category = "Shoes" IF Users.segment = "0" '
        "| EXCLUDE ItemID WHERE Items.in_stock = false"
    )
    member, other = {"segment": "0"}, {"segment": "1"}
    assert allowed(text, table, user=member, only_if_included=True) == [0]
    assert allowed(text, table, user=other, only_if_included=True) == []
    assert allowed(text, table, only_if_included=True) == []
    assert allowed(text, table, user=other) == [0, 1, 3, 4, 5]  # a filter: every item stays
    # Without INCLUDE statements the flag changes nothing.
    no_include = "EXCLUDE ItemID WHERE Items.in_stock = false"
    assert allowed(no_include, table, only_if_included=True) == [0, 1, 3, 4, 5]


def test_current_item_values(table):
    same_category = "INCLUDE ItemID WHERE Items.category IN (CurrentItem.category)"
    assert allowed(same_category, table, current_item={"category": "Shoes"}) == [0, 2]
    cheaper = "INCLUDE ItemID WHERE Items.price < CurrentItem.price"
    assert allowed(cheaper, table, current_item={"Price": 25}) == [0, 4, 5]
    shared_tag = "INCLUDE ItemID WHERE Items.tags IN (CurrentItem.tags)"
    assert allowed(shared_tag, table, current_item={"tags": ["blue", "sale"]}) == [0, 1, 4]
    # A current item without the attribute matches nothing, in either direction.
    assert allowed(same_category, table, current_item={}) == []
    assert allowed(cheaper, table, current_item={"price": None}) == []
    with pytest.raises(FilterParameterError) as info:
        compile_filter(same_category).mask(table)
    assert "only available when recommending items related to an item" in str(info.value)
    assert info.value.position == same_category.index("CurrentItem")


def test_filter_reports_what_request_data_it_reads():
    flt = compile_filter(
        'EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase") '
        "| INCLUDE ItemID WHERE Items.c IN (CurrentItem.c) AND Users.age > 3"
    )
    assert (flt.uses_interactions, flt.uses_users, flt.uses_current_item) == (True, True, True)
    plain = compile_filter("INCLUDE ItemID WHERE Items.c = 1")
    assert (plain.uses_interactions, plain.uses_users, plain.uses_current_item) == (
        False,
        False,
        False,
    )


def test_vectorised_mask_agrees_with_a_row_by_row_reading():
    rng = np.random.default_rng(7)
    n = 2_000
    categories = np.array(["a", "b", "c", None], dtype=object)[rng.integers(0, 4, n)]
    prices = rng.uniform(0, 100, n)
    prices[rng.random(n) < 0.1] = np.nan
    stock = rng.random(n) < 0.8
    table = ItemTable({"category": categories, "price": prices, "stock": stock})
    flt = compile_filter(
        'INCLUDE ItemID WHERE Items.category IN ("a", "b") AND Items.price < 40 '
        'OR Items.category = "c" | EXCLUDE ItemID WHERE Items.stock = false'
    )
    expected = [
        ((c in ("a", "b") and p < 40) or c == "c") and bool(ok)
        for c, p, ok in zip(categories, prices, stock, strict=True)
    ]
    assert flt.mask(table).tolist() == expected


# --------------------------------------------------------------------------- properties

IDENTIFIERS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
STRINGS = st.text(max_size=12)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
VALUES = st.one_of(
    STRINGS.map(lambda v: Literal("string", v)),
    NUMBERS.map(lambda v: Literal("number", v)),
    st.booleans().map(lambda v: Literal("boolean", v)),
    IDENTIFIERS.map(Param),
    IDENTIFIERS.map(CurrentItemRef),
)
FIELDS = st.builds(Field, st.sampled_from(["Items", "Interactions", "Users"]), IDENTIFIERS)


@st.composite
def comparisons(draw):
    op = draw(st.sampled_from(["IN", "NOT IN", "=", "!=", "<", "<=", ">", ">="]))
    count = draw(st.integers(1, 4)) if op in ("IN", "NOT IN") else 1
    values = tuple(draw(VALUES) for _ in range(count))
    return Comparison(draw(FIELDS), op, values)


def _bool_op(op, operands):
    flat = []
    for operand in operands:
        flat.extend(
            operand.operands if isinstance(operand, BoolOp) and operand.op == op else [operand]
        )
    return BoolOp(op, tuple(flat))


CONDITIONS = st.recursive(
    comparisons(),
    lambda children: st.builds(
        _bool_op, st.sampled_from(["AND", "OR"]), st.lists(children, min_size=2, max_size=3)
    ),
    max_leaves=8,
)
STATEMENTS = st.builds(
    Statement,
    st.sampled_from(["INCLUDE", "EXCLUDE"]),
    CONDITIONS,
    st.lists(comparisons(), max_size=2).map(tuple),
)
EXPRESSIONS = st.lists(STATEMENTS, min_size=1, max_size=3).map(
    lambda statements: FilterExpression(tuple(statements))
)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(EXPRESSIONS)
def test_render_then_parse_round_trips(ast):
    text = render(ast)
    if len(text) > MAX_EXPRESSION_LENGTH:
        return
    parsed = parse(text)
    assert parsed == ast
    assert render(parsed) == text


TOKENS = st.sampled_from(
    [
        "INCLUDE", "EXCLUDE", "ItemID", "WHERE", "AND", "OR", "NOT", "IN", "IF", "|", "(", ")",
        ",", ".", "=", "!=", "<", "<=", ">", ">=", "<>", "Items", "Interactions", "Users",
        "CurrentItem", "CurrentUser", "category", "event_type", "price", '"Shoes"', '"', "'",
        "$CATS", "$", "20", "-1.5", "true", "false", "\\", "\n", "#", "Items.category",
        "Interactions.event_type", "Users.age", "CurrentItem.category",
    ]
)  # fmt: skip
GARBAGE = st.one_of(
    st.text(max_size=80),
    st.lists(TOKENS, max_size=30).map(" ".join),
    st.lists(TOKENS, max_size=30).map("".join),
)


@settings(max_examples=500, deadline=None, database=None)
@given(GARBAGE)
def test_garbage_only_ever_raises_filter_syntax_error(text):
    try:
        parse(text)
    except FilterSyntaxError as error:
        assert error.position is not None and 0 <= error.position <= len(text)
        assert str(error)
        error.pointer(text)


@settings(max_examples=300, deadline=None, database=None)
@given(GARBAGE)
def test_garbage_compiles_or_raises_a_filter_error(text):
    try:
        flt = compile_filter(text, schema=SCHEMA)
    except FilterError as error:
        assert str(error)
        return
    assert isinstance(flt.parameters, tuple)


@st.composite
def item_comparisons(draw):
    field = draw(st.sampled_from(["category", "price", "stock"]))
    if field == "price":
        op = draw(st.sampled_from(["IN", "NOT IN", "=", "!=", "<", "<=", ">", ">="]))
        pool = st.integers(0, 10).map(num)
    else:
        op = draw(st.sampled_from(["IN", "NOT IN", "=", "!="]))
        pool = (
            st.sampled_from(["a", "b", "c", "z"]).map(s)
            if field == "category"
            else st.booleans().map(lambda v: Literal("boolean", v))
        )
    count = draw(st.integers(1, 3)) if op in ("IN", "NOT IN") else 1
    return Comparison(Field("Items", field), op, tuple(draw(pool) for _ in range(count)))


ITEM_CONDITIONS = st.recursive(
    item_comparisons(),
    lambda children: st.builds(
        _bool_op, st.sampled_from(["AND", "OR"]), st.lists(children, min_size=2, max_size=3)
    ),
    max_leaves=6,
)


def _row_matches(node, row) -> bool:
    if isinstance(node, BoolOp):
        results = [_row_matches(operand, row) for operand in node.operands]
        return all(results) if node.op == "AND" else any(results)
    value = row[node.field.name]
    if value is None:
        return False  # missing never matches
    wanted = [literal.value for literal in node.values]
    compare = {
        "IN": lambda: value in wanted,
        "=": lambda: value == wanted[0],
        "NOT IN": lambda: value not in wanted,
        "!=": lambda: value != wanted[0],
        "<": lambda: value < wanted[0],
        "<=": lambda: value <= wanted[0],
        ">": lambda: value > wanted[0],
        ">=": lambda: value >= wanted[0],
    }
    return compare[node.op]()


@settings(max_examples=300, deadline=None, database=None)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "category": st.sampled_from(["a", "b", "c", None]),
                "price": st.one_of(st.none(), st.integers(0, 10)),
                "stock": st.sampled_from([True, False, None]),
            }
        ),
        min_size=1,
        max_size=25,
    ),
    statements=st.lists(
        st.tuples(st.sampled_from(["INCLUDE", "EXCLUDE"]), ITEM_CONDITIONS), min_size=1, max_size=3
    ),
)
def test_mask_agrees_with_a_row_by_row_reading_of_random_filters(rows, statements):
    table = ItemTable(
        {
            "category": np.array([r["category"] for r in rows], dtype=object),
            "price": np.array([np.nan if r["price"] is None else r["price"] for r in rows]),
            "stock": np.array([r["stock"] for r in rows], dtype=object),
        },
        schema={"items": {"category": "categorical", "price": "numeric", "stock": "boolean"}},
    )
    ast = FilterExpression(tuple(Statement(action, cond) for action, cond in statements))
    expected = []
    for row in rows:
        includes = [_row_matches(c, row) for a, c in statements if a == "INCLUDE"]
        excludes = [_row_matches(c, row) for a, c in statements if a == "EXCLUDE"]
        expected.append((any(includes) if includes else True) and not any(excludes))
    assert compile_filter(render(ast)).mask(table).tolist() == expected


def test_numbers_too_large_for_a_float_are_errors():
    with pytest.raises(FilterSyntaxError, match="too large"):
        parse("INCLUDE ItemID WHERE Items.price < " + "9" * 400)
    with pytest.raises(FilterParameterError, match="not a finite number"):
        parameter_literals("MAX", 10**400)


def test_a_schema_checks_only_the_datasets_it_describes():
    items_only = {"items": {"category": "categorical"}}
    compile_filter('INCLUDE ItemID WHERE Items.category = "a" AND Users.anything > 3', items_only)
    with pytest.raises(FilterSemanticError, match="the users dataset has no attribute fields"):
        compile_filter(
            'INCLUDE ItemID WHERE Items.category = "a" AND Users.age > 3',
            {"items": items_only["items"], "users": []},
        )


def test_missing_request_data_is_reported_even_for_a_skipped_statement(table):
    flt = compile_filter(
        "EXCLUDE ItemID WHERE Interactions.event_type IN ($TYPES) "
        "| INCLUDE ItemID WHERE Items.category IN (CurrentItem.category) AND Users.age > 18"
    )
    with pytest.raises(FilterParameterError, match=r"\$TYPES"):
        flt.mask(table)  # no history, no user: both statements would be skipped
    with pytest.raises(FilterParameterError, match="related to an item"):
        flt.mask(table, values={"TYPES": "view"})
    assert flt.mask(table, values={"TYPES": "view"}, current_item={}).all()


def test_every_example_in_the_docs_compiles():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "filters.md").read_text()
    examples = [
        span.replace("\\|", "|")
        for span in re.findall(r"`([^`\n]+)`", doc)
        if span.startswith(("INCLUDE ", "EXCLUDE ")) and "ItemID" in span
    ]
    blocks = re.findall(r"```\n((?:INCLUDE|EXCLUDE)[^`]*?)```", doc)
    for block in blocks:  # one filter per line, or one filter continued on lines starting "|"
        lines = [line for line in block.splitlines() if line.strip()]
        if all(line.startswith("|") for line in lines[1:]):
            examples.append(" ".join(lines))
        else:
            examples.extend(lines)
    assert len(examples) > 15
    for example in examples:
        if "<condition>" in example:
            continue  # the grammar's placeholder
        compile_filter(example)
