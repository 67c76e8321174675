"""The filter expression language: errors, tokenizer, parser, AST, rendering and parameters.

Django-free. The language follows Amazon Personalize's filter expressions::

    EXCLUDE ItemID WHERE Items.in_stock = false
    | INCLUDE ItemID WHERE Items.category IN ($CATEGORIES) AND Items.price < 50
    | EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase")

Grammar (keywords and dataset names in any case)::

    filter      := statement ("|" statement)*
    statement   := ("INCLUDE" | "EXCLUDE") "ItemID" "WHERE" or_cond ["IF" guard]
    or_cond     := and_cond ("OR" and_cond)*
    and_cond    := primary ("AND" primary)*
    primary     := "(" or_cond ")" | comparison
    comparison  := field (["NOT"] "IN" "(" value ("," value)* ")" | op value)
    guard       := comparison ("AND" comparison)*          (Users fields only)
    field       := dataset "." name                         (Items, Interactions, Users)
    op          := "=" | "!=" | "<" | "<=" | ">" | ">="
    value       := "string" | number | true | false | $PARAM | CurrentItem.name

``parse`` turns text into an immutable :class:`FilterExpression`; ``render`` turns it back into
canonical text (``parse(render(ast)) == ast``); ``bind`` replaces ``$PARAM`` placeholders with
values. Every mistake raises a :class:`FilterError` with the 0-based character position, what
was expected there and what was found.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

MAX_EXPRESSION_LENGTH = 2000
MAX_IN_VALUES = 500
MAX_STATEMENTS = 20
MAX_CONDITIONS = 100
MAX_NESTING = 20
MAX_PARAMETER_LENGTH = 20_000

INCLUDE = "INCLUDE"
EXCLUDE = "EXCLUDE"
# Dataset names as written (any case) -> canonical name. CurrentUser is Personalize's spelling.
DATASETS = {
    "items": "Items",
    "interactions": "Interactions",
    "users": "Users",
    "currentuser": "Users",
}
CURRENT_ITEM = "CurrentItem"
IN_OPERATORS = ("IN", "NOT IN")
COMPARISON_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
OPERATORS = IN_OPERATORS + COMPARISON_OPERATORS
ORDERING_OPERATORS = ("<", "<=", ">", ">=")
VALUE_EXPECTED = (
    "<text in double quotes>",
    "<number>",
    "true",
    "false",
    "$PARAMETER",
    "CurrentItem.<field>",
)
KEYWORDS = frozenset(
    {"INCLUDE", "EXCLUDE", "ITEMID", "WHERE", "AND", "OR", "NOT", "IN", "TRUE", "FALSE", "IF"}
)


# --------------------------------------------------------------------------- errors


class FilterError(ValueError):
    """A filter expression (or its parameter values) that cannot be used.

    ``position`` is the 0-based character offset of the mistake in the expression (None when
    the mistake is not in the text, e.g. a parameter value), ``expected`` what would have been
    valid there and ``found`` the offending text. ``str(error)`` is a sentence for humans.
    """

    def __init__(
        self,
        message: str,
        position: int | None = None,
        expected: Iterable[str] = (),
        found: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.position = position
        self.expected = tuple(expected)
        self.found = found

    def __str__(self) -> str:
        return self.message

    def pointer(self, expression: str) -> str:
        """The line of ``expression`` holding the mistake and a ``^`` under it."""
        if self.position is None:
            return expression
        position = max(0, min(self.position, len(expression)))
        start = expression.rfind("\n", 0, position) + 1
        end = expression.find("\n", position)
        line = expression[start : end if end != -1 else len(expression)]
        pad = "".join("\t" if char == "\t" else " " for char in expression[start:position])
        return f"{line}\n{pad}^"

    def to_dict(self) -> dict:
        """The error as JSON for an API response."""
        return {
            "message": self.message,
            "position": self.position,
            "expected": list(self.expected),
            "found": self.found,
        }


class FilterSyntaxError(FilterError):
    """The text does not follow the grammar."""


class FilterSemanticError(FilterError):
    """Grammatical, but meaningless for the data: unknown field, wrong operator for a type..."""


class FilterParameterError(FilterError):
    """A ``$PARAM`` has no value or a value that cannot be used."""


_PLACEHOLDER = re.compile(r"^<[A-Za-z][A-Za-z ]*>$")


def _quote_list(words: Iterable[str]) -> str:
    quoted = [word if _PLACEHOLDER.match(word) else f'"{word}"' for word in words]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def expected_error(
    expected: Iterable[str], position: int, found: str | None, after: str | None = None
) -> FilterSyntaxError:
    """``Expected "IN", "=" ... after Items.category at position 31 (found "INN")``."""
    expected = tuple(expected)
    context = f" after {after}" if after else ""
    if found is None:
        shown = "end of expression"
    elif found.startswith('"'):
        shown = found  # a string token, already quoted
    else:
        shown = f'"{found}"'
    message = f"Expected {_quote_list(expected)}{context} at position {position} (found {shown})"
    return FilterSyntaxError(message, position, expected, found)


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Field:
    """``Items.price``: a dataset (canonical name) and a field name as written."""

    dataset: str
    name: str
    position: int = field(default=-1, compare=False)

    def __str__(self) -> str:
        return f"{self.dataset}.{self.name}"


@dataclass(frozen=True)
class Literal:
    """A constant: kind is "string", "number" or "boolean"."""

    kind: str
    value: str | int | float | bool
    position: int = field(default=-1, compare=False)
    parameter: str | None = field(default=None, compare=False)  # set when bound from $NAME


@dataclass(frozen=True)
class Param:
    """``$NAME``: a placeholder filled per request from ``filter_values``."""

    name: str
    position: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class CurrentItemRef:
    """``CurrentItem.category``: the source item's value in a related-items request."""

    name: str
    position: int = field(default=-1, compare=False)


Value = Literal | Param | CurrentItemRef


@dataclass(frozen=True)
class Comparison:
    """``field op values``; ``values`` has one element except for IN / NOT IN."""

    field: Field
    op: str
    values: tuple[Value, ...]
    position: int = field(default=-1, compare=False)  # of the operator


@dataclass(frozen=True)
class BoolOp:
    """AND / OR over two or more operands (chains are flattened)."""

    op: str
    operands: tuple[Condition, ...]


Condition = Comparison | BoolOp


@dataclass(frozen=True)
class Statement:
    """``INCLUDE|EXCLUDE ItemID WHERE condition [IF guard]``."""

    action: str
    condition: Condition
    guard: tuple[Comparison, ...] = ()
    position: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class FilterExpression:
    """Statements joined by ``|``."""

    statements: tuple[Statement, ...]

    def comparisons(self) -> list[Comparison]:
        return [c for s in self.statements for c in iter_comparisons(s)]

    def parameters(self) -> tuple[str, ...]:
        """``$NAME`` placeholders in order of first use."""
        names: dict[str, None] = {}
        for comparison in self.comparisons():
            for value in comparison.values:
                if isinstance(value, Param):
                    names.setdefault(value.name)
        return tuple(names)


def iter_comparisons(node: Statement | Condition):
    """Every Comparison below ``node`` (the guard of a statement included), in text order."""
    if isinstance(node, Statement):
        yield from iter_comparisons(node.condition)
        yield from node.guard
    elif isinstance(node, BoolOp):
        for operand in node.operands:
            yield from iter_comparisons(operand)
    else:
        yield node


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT STRING NUMBER PARAM OP LPAREN RPAREN COMMA DOT PIPE EOF
    text: str
    position: int
    value: object = None


_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SINGLE = {"(": "LPAREN", ")": "RPAREN", ",": "COMMA", ".": "DOT", "|": "PIPE"}


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; raises FilterSyntaxError on a character that cannot start one."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char in _SINGLE:
            tokens.append(Token(_SINGLE[char], char, i))
            i += 1
            continue
        if char in "<>=!":
            two = text[i : i + 2]
            if two in ("<=", ">=", "!="):
                tokens.append(Token("OP", two, i))
                i += 2
            elif two == "<>":
                tokens.append(Token("OP", "!=", i))
                i += 2
            elif two == "==":
                tokens.append(Token("OP", "=", i))
                i += 2
            elif char == "!":
                raise expected_error(["!="], i, char)
            else:
                tokens.append(Token("OP", char, i))
                i += 1
            continue
        if char == '"':
            value, end = _read_string(text, i)
            tokens.append(Token("STRING", text[i:end], i, value))
            i = end
            continue
        if char == "'":
            raise FilterSyntaxError(
                f"Strings are written in double quotes at position {i} "
                f'(found "\'"); write "text" instead of \'text\'',
                i,
                ('"',),
                "'",
            )
        if char == "$":
            match = _IDENT.match(text, i + 1)
            if not match:
                found = text[i + 1] if i + 1 < n else None
                raise expected_error(["<parameter name>"], i + 1, found, after='"$"')
            tokens.append(Token("PARAM", text[i : match.end()], i, match.group()))
            i = match.end()
            continue
        match = _NUMBER.match(text, i)
        if match:
            raw = match.group()
            number: int | float = float(raw)
            if re.fullmatch(r"-?\d+", raw) and math.isfinite(number):
                number = int(raw)
            if not math.isfinite(number):
                raise FilterSyntaxError(
                    f"The number {raw[:30]} at position {i} is too large", i, ("<number>",), raw
                )
            tokens.append(Token("NUMBER", raw, i, number))
            i = match.end()
            continue
        match = _IDENT.match(text, i)
        if match:
            tokens.append(Token("IDENT", match.group(), i))
            i = match.end()
            continue
        raise FilterSyntaxError(
            f'Unexpected character "{char}" at position {i}; expected a keyword, a field, '
            "a value, an operator, a parenthesis, a comma or |",
            i,
            ("<keyword>", "<field>", "<value>", "<operator>", "(", ")", ",", "|"),
            char,
        )
    tokens.append(Token("EOF", "", n))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(chars), i + 1
        chars.append(char)
        i += 1
    raise FilterSyntaxError(
        f"The string starting at position {start} is not closed: expected a closing double "
        f"quote at position {len(text)} (found end of expression)",
        len(text),
        ('"',),
        None,
    )


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.comparisons = 0

    # token helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "EOF":
            self.index += 1
        return token

    def is_keyword(self, word: str) -> bool:
        return self.token.kind == "IDENT" and self.token.text.upper() == word

    def fail(self, expected: Iterable[str], after: str | None = None) -> FilterSyntaxError:
        token = self.token
        return expected_error(
            expected, token.position, None if token.kind == "EOF" else token.text, after
        )

    def keyword(self, word: str, after: str | None) -> Token:
        if not self.is_keyword(word):
            raise self.fail([word], after)
        return self.advance()

    # grammar
    def parse(self) -> FilterExpression:
        statements = [self.statement(None)]
        while self.token.kind == "PIPE":
            self.advance()
            if len(statements) >= MAX_STATEMENTS:
                raise FilterSyntaxError(
                    f"Too many statements at position {self.token.position}: a filter may join "
                    f"at most {MAX_STATEMENTS} with |",
                    self.token.position,
                    ("<end of expression>",),
                    self.token.text or None,
                )
            statements.append(self.statement('"|"'))
        if self.token.kind != "EOF":
            expected = ["AND", "OR", "IF", "|", "<end of expression>"]
            if statements[-1].guard:
                expected.remove("IF")
                expected.remove("OR")
            raise self.fail(expected, self._previous_text())
        return FilterExpression(tuple(statements))

    def _previous_text(self) -> str:
        previous = self.tokens[self.index - 1]
        return previous.text if previous.kind == "STRING" else f'"{previous.text}"'

    def statement(self, after: str | None) -> Statement:
        token = self.token
        action = token.text.upper() if token.kind == "IDENT" else ""
        if action not in (INCLUDE, EXCLUDE):
            raise self.fail([INCLUDE, EXCLUDE], after)
        self.advance()
        target = self.token
        if not self.is_keyword("ITEMID"):
            if target.kind == "IDENT" and target.text.upper() in ("USERID", "ACTIONID"):
                raise FilterSyntaxError(
                    f'Only items can be filtered: expected "ItemID" after {action} at '
                    f'position {target.position} (found "{target.text}")',
                    target.position,
                    ("ItemID",),
                    target.text,
                )
            raise self.fail(["ItemID"], action)
        self.advance()
        self.keyword("WHERE", '"ItemID"')
        condition = self.or_condition('"WHERE"')
        guard: list[Comparison] = []
        if self.is_keyword("IF"):
            self.advance()
            guard.append(self.comparison('"IF"'))
            while self.is_keyword("AND"):
                self.advance()
                guard.append(self.comparison('"AND"'))
        return Statement(action, condition, tuple(guard), token.position)

    def or_condition(self, after: str | None) -> Condition:
        operands = [self.and_condition(after)]
        while self.is_keyword("OR"):
            self.advance()
            operands.append(self.and_condition('"OR"'))
        return _combine("OR", operands)

    def and_condition(self, after: str | None) -> Condition:
        operands = [self.primary(after)]
        while self.is_keyword("AND"):
            self.advance()
            operands.append(self.primary('"AND"'))
        return _combine("AND", operands)

    def primary(self, after: str | None) -> Condition:
        if self.token.kind == "LPAREN":
            opening = self.advance()
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise FilterSyntaxError(
                    f"Parentheses nested too deeply at position {opening.position}; "
                    f"at most {MAX_NESTING} levels",
                    opening.position,
                    ("<field>",),
                    "(",
                )
            condition = self.or_condition('"("')
            if self.token.kind != "RPAREN":
                raise self.fail(["AND", "OR", ")"], self._previous_text())
            self.advance()
            self.depth -= 1
            return condition
        return self.comparison(after, allow_paren=True)

    def field(self, after: str | None, allow_paren: bool) -> Field:
        token = self.token
        datasets = ["Items.<field>", "Interactions.<field>", "Users.<field>"]
        if allow_paren:
            datasets.append("(")
        if token.kind != "IDENT" or token.text.lower() not in DATASETS:
            if token.kind == "IDENT" and token.text.lower() == "currentitem":
                raise FilterSyntaxError(
                    f"CurrentItem can only be compared against, not filtered: write "
                    f"Items.<field> = CurrentItem.<field> (position {token.position})",
                    token.position,
                    tuple(datasets),
                    token.text,
                )
            raise self.fail(datasets, after)
        self.advance()
        dataset = DATASETS[token.text.lower()]
        if self.token.kind != "DOT":
            raise self.fail(["."], token.text)
        self.advance()
        name = self.token
        if name.kind != "IDENT":
            raise self.fail([f"<{dataset} field>"], f"{token.text}.")
        self.advance()
        return Field(dataset, name.text, token.position)

    def comparison(self, after: str | None, allow_paren: bool = False) -> Comparison:
        target = self.field(after, allow_paren)
        self.comparisons += 1
        if self.comparisons > MAX_CONDITIONS:
            raise FilterSyntaxError(
                f"Too many conditions at position {target.position}: at most {MAX_CONDITIONS} "
                "comparisons per filter",
                target.position,
                (),
                str(target),
            )
        op_token = self.token
        if op_token.kind == "OP":
            self.advance()
            value = self.value(f'"{op_token.text}"')
            return Comparison(target, op_token.text, (value,), op_token.position)
        op = None
        if self.is_keyword("IN"):
            self.advance()
            op = "IN"
        elif self.is_keyword("NOT"):
            self.advance()
            self.keyword("IN", '"NOT"')
            op = "NOT IN"
        if op is None:
            raise self.fail(OPERATORS, str(target))
        if self.token.kind != "LPAREN":
            raise self.fail(["("], f'"{op}"')
        self.advance()
        values = [self.value('"("')]
        while self.token.kind == "COMMA":
            self.advance()
            if len(values) >= MAX_IN_VALUES:
                raise FilterSyntaxError(
                    f"Too many values in the {op} list at position {self.token.position}: "
                    f"at most {MAX_IN_VALUES}",
                    self.token.position,
                    (")",),
                    self.token.text or None,
                )
            values.append(self.value('","'))
        if self.token.kind != "RPAREN":
            raise self.fail([",", ")"], self._previous_text())
        self.advance()
        return Comparison(target, op, tuple(values), op_token.position)

    def value(self, after: str) -> Value:
        token = self.token
        if token.kind == "STRING":
            self.advance()
            return Literal("string", token.value, token.position)
        if token.kind == "NUMBER":
            self.advance()
            return Literal("number", token.value, token.position)
        if token.kind == "PARAM":
            self.advance()
            return Param(token.value, token.position)
        if token.kind == "IDENT":
            word = token.text.lower()
            if word in ("true", "false"):
                self.advance()
                return Literal("boolean", word == "true", token.position)
            if word == "currentitem":
                self.advance()
                if self.token.kind != "DOT":
                    raise self.fail(["."], token.text)
                self.advance()
                name = self.token
                if name.kind != "IDENT":
                    raise self.fail(["<item field>"], "CurrentItem.")
                self.advance()
                return CurrentItemRef(name.text, token.position)
        raise self.fail(VALUE_EXPECTED, after)


def _combine(op: str, operands: list[Condition]) -> Condition:
    if len(operands) == 1:
        return operands[0]
    flat: list[Condition] = []
    for operand in operands:
        if isinstance(operand, BoolOp) and operand.op == op:
            flat.extend(operand.operands)
        else:
            flat.append(operand)
    return BoolOp(op, tuple(flat))


def parse(text: str) -> FilterExpression:
    """Parse a filter expression; raises FilterSyntaxError pointing at the first mistake."""
    if not isinstance(text, str):
        raise FilterSyntaxError("A filter expression must be text", 0, ("<text>",), None)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise FilterSyntaxError(
            f"The expression is {len(text):,} characters long; the limit is "
            f"{MAX_EXPRESSION_LENGTH:,} (position {MAX_EXPRESSION_LENGTH})",
            MAX_EXPRESSION_LENGTH,
            ("<end of expression>",),
            text[MAX_EXPRESSION_LENGTH : MAX_EXPRESSION_LENGTH + 20],
        )
    return _Parser(text).parse()


# --------------------------------------------------------------------------- rendering


def render_value(value: Value) -> str:
    if isinstance(value, Param):
        return f"${value.name}"
    if isinstance(value, CurrentItemRef):
        return f"{CURRENT_ITEM}.{value.name}"
    if value.kind == "string":
        escaped = str(value.value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if value.kind == "boolean":
        return "true" if value.value else "false"
    return repr(value.value) if isinstance(value.value, float) else str(value.value)


def render_condition(node: Condition, parent: str | None = None) -> str:
    if isinstance(node, Comparison):
        values = [render_value(v) for v in node.values]
        if node.op in IN_OPERATORS:
            return f"{node.field} {node.op} ({', '.join(values)})"
        return f"{node.field} {node.op} {values[0]}"
    text = f" {node.op} ".join(render_condition(o, node.op) for o in node.operands)
    return f"({text})" if parent == "AND" and node.op == "OR" else text


def render(ast: FilterExpression) -> str:
    """Canonical text for ``ast``: upper-case keywords, canonical dataset names."""
    parts = []
    for statement in ast.statements:
        text = f"{statement.action} ItemID WHERE {render_condition(statement.condition)}"
        if statement.guard:
            text += " IF " + " AND ".join(render_condition(c) for c in statement.guard)
        parts.append(text)
    return " | ".join(parts)


# --------------------------------------------------------------------------- parameters


def lookup(mapping: Mapping, name: str):
    """``mapping[name]`` matching the key exactly, else in any case; KeyError if absent."""
    if name in mapping:
        return mapping[name]
    lowered = name.lower()
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    raise KeyError(name)


def parameter_literals(name: str, raw, position: int = -1) -> tuple[Literal, ...]:
    """The values of parameter ``name`` as literals.

    ``raw`` is a real list (or tuple) of strings, numbers and booleans, a single number or
    boolean, or a string as Amazon Personalize sends it: comma-separated literals such as
    ``"\\"Shoes\\",\\"Bags\\""`` or ``"20"``. A string that is not such a list is split on commas
    (``Shoes, Bags``) and each part used as text.
    """

    def literal(value) -> Literal:
        if isinstance(value, bool):
            return Literal("boolean", value, position, name)
        if isinstance(value, int | float):
            if abs(value) > 1e308 or not math.isfinite(float(value)):
                raise FilterParameterError(
                    f"Parameter ${name} has the value {str(value)[:30]}, which is not a finite "
                    "number",
                    None,
                    ("<number>",),
                    str(value),
                )
            return Literal("number", value, position, name)
        if isinstance(value, str):
            return Literal("string", value, position, name)
        raise FilterParameterError(
            f"Parameter ${name} holds a {type(value).__name__}; use text, numbers, true/false "
            "or a list of them",
            None,
            ("<text>", "<number>", "<boolean>", "<list>"),
            repr(value)[:40],
        )

    if isinstance(raw, list | tuple):
        return tuple(literal(v) for v in raw)
    if not isinstance(raw, str):
        return (literal(raw),)
    if len(raw) > MAX_PARAMETER_LENGTH:
        raise FilterParameterError(
            f"The value of ${name} is {len(raw):,} characters long; the limit is "
            f"{MAX_PARAMETER_LENGTH:,}",
            None,
            (),
            raw[:40],
        )
    parsed = _literal_list(raw)
    if parsed is not None:
        return tuple(literal(v) for v in parsed)
    return tuple(literal(part.strip()) for part in raw.split(",") if part.strip())


def _literal_list(raw: str) -> list | None:
    """``"a", 2, true`` -> ["a", 2, True]; None if ``raw`` is not such a list."""
    if not raw.strip():
        return []
    try:
        tokens = tokenize(raw)
    except FilterSyntaxError:
        return None
    values: list = []
    expect_value = True
    for token in tokens[:-1]:
        if expect_value:
            if token.kind in ("STRING", "NUMBER"):
                values.append(token.value)
            elif token.kind == "IDENT" and token.text.lower() in ("true", "false"):
                values.append(token.text.lower() == "true")
            else:
                return None
        elif token.kind != "COMMA":
            return None
        expect_value = not expect_value
    return None if expect_value else values


def bind(ast: FilterExpression, values: Mapping[str, object] | None) -> FilterExpression:
    """A copy of ``ast`` with every ``$NAME`` replaced by its value from ``values``.

    A parameter used in IN (...) may stand for several values; elsewhere it needs exactly one.
    Raises FilterParameterError naming a parameter without a value. Unused values are ignored.
    """
    values = values or {}

    def bind_comparison(node: Comparison) -> Comparison:
        if not any(isinstance(v, Param) for v in node.values):
            return node
        bound: list[Value] = []
        for value in node.values:
            if isinstance(value, Param):
                bound.extend(resolve_parameter(node, value, values))
            else:
                bound.append(value)
        if node.op in IN_OPERATORS and len(bound) > MAX_IN_VALUES:
            raise FilterParameterError(
                f"The {node.op} list of {node.field} has {len(bound)} values once parameters "
                f"are filled in; the limit is {MAX_IN_VALUES}",
                node.position,
                (),
                None,
            )
        return replace(node, values=tuple(bound))

    def bind_condition(node: Condition) -> Condition:
        if isinstance(node, Comparison):
            return bind_comparison(node)
        return replace(node, operands=tuple(bind_condition(o) for o in node.operands))

    statements = tuple(
        replace(
            s,
            condition=bind_condition(s.condition),
            guard=tuple(bind_comparison(c) for c in s.guard),
        )
        for s in ast.statements
    )
    return FilterExpression(statements)


def resolve_parameter(
    node: Comparison, param: Param, values: Mapping[str, object]
) -> tuple[Literal, ...]:
    """The literals ``param`` stands for in ``node``; checks presence and arity."""
    try:
        raw = lookup(values, param.name)
    except KeyError:
        raise FilterParameterError(
            f"No value for parameter ${param.name} (used at position {param.position}); pass it "
            f'in filter_values, e.g. {{"{param.name}": "\\"Shoes\\",\\"Bags\\""}}',
            param.position,
            (f"${param.name}",),
            None,
        ) from None
    literals = parameter_literals(param.name, raw, param.position)
    if node.op not in IN_OPERATORS and len(literals) != 1:
        raise FilterParameterError(
            f"Parameter ${param.name} must be a single value for {node.field} {node.op} "
            f"(got {len(literals)}; position {param.position})",
            param.position,
            ("<one value>",),
            str(raw)[:40],
        )
    return literals
