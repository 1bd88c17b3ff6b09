"""The one Cypher shape the real server executes: ``MATCH (n:Label) WHERE … RETURN … ORDER BY … LIMIT``.

Supported, case-insensitive keywords::

    MATCH (n[:Label])
    [WHERE n.prop OP value [AND n.prop OP value ...]]     OP: = <> != < > <= >=
    RETURN item [AS alias] [, ...]                        item: n | n.prop | count(n) | count(*)
    [ORDER BY n.prop|alias [ASC|DESC] [, ...]]
    [LIMIT integer|$param]

Values are literals ('text', "text", 42, 4.2, true, false, null) or ``$param``.
Comparisons follow Cypher's null rule: anything compared with null, or values
of different kinds, is not a match. With ``count`` the other items group rows.
"""

from __future__ import annotations

import json
import operator
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class QueryError(Exception):
    """The query is outside the supported shape, or a parameter is missing."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<param>\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<punct>[():.,*])
    """,
    re.VERBOSE,
)
_KEYWORDS = {"MATCH", "WHERE", "AND", "RETURN", "ORDER", "BY", "LIMIT", "AS", "ASC", "DESC",
             "ASCENDING", "DESCENDING", "COUNT", "TRUE", "FALSE", "NULL"}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<>": operator.ne, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise QueryError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    return tokens


# ---------------------------------------------------------------- the parsed query


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Param:
    name: str


@dataclass(frozen=True)
class PropertyRef:
    prop: str


@dataclass(frozen=True)
class Condition:
    left: Any
    op: str
    right: Any


@dataclass(frozen=True)
class ReturnItem:
    kind: str  # "node", "property" or "count"
    prop: str | None
    column: str


@dataclass(frozen=True)
class OrderItem:
    target: str  # a column name, or a property when ``is_property``
    is_property: bool
    descending: bool


@dataclass
class MatchQuery:
    variable: str
    label: str | None
    where: list[Condition] = field(default_factory=list)
    returns: list[ReturnItem] = field(default_factory=list)
    order_by: list[OrderItem] = field(default_factory=list)
    limit: Any = None  # Literal or Param


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self, what: str) -> Token:
        token = self.peek()
        if token is None:
            raise QueryError(f"expected {what}, found end of query")
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "ident" and token.upper == word:
            self.i += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            token = self.peek()
            found = f"{token.text!r} at position {token.pos}" if token else "end of query"
            raise QueryError(f"expected {word}, found {found}")

    def expect(self, text: str) -> None:
        token = self.next(repr(text))
        if token.text != text:
            raise QueryError(f"expected {text!r}, found {token.text!r} at position {token.pos}")

    def name(self, what: str) -> str:
        token = self.next(what)
        if token.kind != "ident" or token.upper in _KEYWORDS - {"COUNT"}:
            raise QueryError(f"expected {what}, found {token.text!r} at position {token.pos}")
        return token.text[1:-1] if token.text.startswith("`") else token.text

    def parse(self) -> MatchQuery:
        self.expect_keyword("MATCH")
        self.expect("(")
        variable = self.name("a variable")
        label = None
        if self.peek() is not None and self.peek().text == ":":
            self.i += 1
            label = self.name("a label")
        self.expect(")")
        query = MatchQuery(variable, label)
        if self.keyword("WHERE"):
            query.where.append(self.condition(variable))
            while self.keyword("AND"):
                query.where.append(self.condition(variable))
        self.expect_keyword("RETURN")
        query.returns.append(self.return_item(variable))
        while self.peek() is not None and self.peek().text == ",":
            self.i += 1
            query.returns.append(self.return_item(variable))
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            query.order_by.append(self.order_item(variable, query.returns))
            while self.peek() is not None and self.peek().text == ",":
                self.i += 1
                query.order_by.append(self.order_item(variable, query.returns))
        if self.keyword("LIMIT"):
            token = self.next("a limit")
            if token.kind == "number" and token.text.isdigit():
                query.limit = Literal(int(token.text))
            elif token.kind == "param":
                query.limit = Param(token.text[1:])
            else:
                raise QueryError(f"LIMIT takes a non-negative integer or a parameter, found {token.text!r}")
        token = self.peek()
        if token is not None:
            raise QueryError(f"unexpected {token.text!r} at position {token.pos}")
        columns = [item.column for item in query.returns]
        if len(set(columns)) != len(columns):
            raise QueryError("two RETURN items have the same column name")
        return query

    def property_ref(self, variable: str) -> PropertyRef:
        name = self.name("a variable")
        if name != variable:
            raise QueryError(f"unknown variable {name!r}")
        self.expect(".")
        return PropertyRef(self.name("a property name"))

    def operand(self, variable: str) -> Any:
        token = self.peek()
        if token is None:
            raise QueryError("expected a value, found end of query")
        if token.kind == "ident" and token.upper not in {"TRUE", "FALSE", "NULL"}:
            return self.property_ref(variable)
        self.i += 1
        if token.kind == "param":
            return Param(token.text[1:])
        if token.kind == "string":
            return Literal(_unescape(token.text[1:-1]))
        if token.kind == "number":
            is_int = re.fullmatch(r"-?\d+", token.text)
            return Literal(int(token.text) if is_int else float(token.text))
        if token.kind == "ident":
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[token.upper])
        raise QueryError(f"expected a value, found {token.text!r} at position {token.pos}")

    def condition(self, variable: str) -> Condition:
        left = self.operand(variable)
        token = self.next("a comparison")
        if token.kind != "op":
            raise QueryError(f"expected a comparison, found {token.text!r} at position {token.pos}")
        right = self.operand(variable)
        if not isinstance(left, PropertyRef) and not isinstance(right, PropertyRef):
            raise QueryError(f"a condition must compare {variable}.<property> with a value")
        return Condition(left, token.text, right)

    def return_item(self, variable: str) -> ReturnItem:
        if self.keyword("COUNT"):
            self.expect("(")
            token = self.next("a variable or *")
            if token.text != "*" and token.text != variable:
                raise QueryError(f"unknown variable {token.text!r} in count()")
            self.expect(")")
            item = ReturnItem("count", None, f"count({token.text})")
        else:
            name = self.name("a variable")
            if name != variable:
                raise QueryError(f"unknown variable {name!r}")
            if self.peek() is not None and self.peek().text == ".":
                self.i += 1
                prop = self.name("a property name")
                item = ReturnItem("property", prop, f"{variable}.{prop}")
            else:
                item = ReturnItem("node", None, variable)
        if self.keyword("AS"):
            item = ReturnItem(item.kind, item.prop, self.name("an alias"))
        return item

    def order_item(self, variable: str, returns: list[ReturnItem]) -> OrderItem:
        name = self.name("a sort key")
        if self.peek() is not None and self.peek().text == ".":
            if name != variable:
                raise QueryError(f"unknown variable {name!r}")
            self.i += 1
            prop = self.name("a property name")
            column = f"{variable}.{prop}"
            is_property = not any(item.column == column for item in returns)
            target = prop if is_property else column
        elif any(item.column == name for item in returns):
            is_property, target = False, name
        else:
            raise QueryError(f"ORDER BY {name!r} is neither {variable}.<property> nor a returned column")
        descending = False
        if self.keyword("DESC") or self.keyword("DESCENDING"):
            descending = True
        else:
            self.keyword("ASC") or self.keyword("ASCENDING")
        return OrderItem(target, is_property, descending)


def parse(text: str) -> MatchQuery:
    return _Parser(text).parse()


# ---------------------------------------------------------------- evaluation


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def compare(left: Any, op: str, right: Any) -> bool:
    """Cypher-like: nulls and mixed kinds never match."""
    kind = _kind(left)
    if kind == "null" or kind != _kind(right):
        return False
    if kind == "other" and op not in {"=", "<>", "!="}:
        return False
    return bool(_OPS[op](left, right))


_ORDER_RANK = {"other": 0, "string": 1, "bool": 2, "number": 3, "null": 4}


def sort_key(value: Any) -> tuple[int, Any]:
    """Ascending order: maps/lists, strings, booleans, numbers, then nulls (Neo4j's order)."""
    kind = _kind(value)
    if kind == "other":
        return _ORDER_RANK[kind], json.dumps(value, sort_keys=True)
    return _ORDER_RANK[kind], (0 if value is None else value)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    execution_time_ms: int

    def document(self) -> dict[str, Any]:
        """The real server's response shape."""
        return {
            "results": [dict(zip(self.columns, row)) for row in self.rows],
            "stats": {
                "nodesCreated": 0,
                "nodesDeleted": 0,
                "relationshipsCreated": 0,
                "relationshipsDeleted": 0,
                "executionTimeMs": self.execution_time_ms,
            },
        }


def execute(
    query: MatchQuery,
    parameters: dict[str, Any],
    scan: Callable[[str | None], Iterable[dict[str, Any]]],
) -> QueryResult:
    """Run a parsed query over ``scan(label)``, which yields node documents."""
    started = time.perf_counter()

    def value_of(operand: Any, node: dict[str, Any]) -> Any:
        if isinstance(operand, PropertyRef):
            return node["properties"].get(operand.prop)
        if isinstance(operand, Param):
            if operand.name not in parameters:
                raise QueryError(f"parameter ${operand.name} was not given")
            return parameters[operand.name]
        return operand.value

    def project(item: ReturnItem, node: dict[str, Any]) -> Any:
        if item.kind == "node":
            return node
        return node["properties"].get(item.prop)

    limit = value_of(query.limit, {}) if query.limit is not None else None
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise QueryError("LIMIT must be a non-negative integer")

    matched = (
        node for node in scan(query.label)
        if all(compare(value_of(c.left, node), c.op, value_of(c.right, node)) for c in query.where)
    )
    aggregated = any(item.kind == "count" for item in query.returns)
    columns = [item.column for item in query.returns]

    if aggregated:
        groups: dict[str, list[Any]] = {}
        for node in matched:
            row = [None if item.kind == "count" else project(item, node) for item in query.returns]
            key = json.dumps([v for v, item in zip(row, query.returns) if item.kind != "count"], sort_keys=True)
            entry = groups.setdefault(key, [row, 0])
            entry[1] += 1
        if not groups and all(item.kind == "count" for item in query.returns):
            groups[""] = [[None] * len(query.returns), 0]
        rows = [
            [count if item.kind == "count" else value for value, item in zip(row, query.returns)]
            for row, count in groups.values()
        ]
        for order in reversed(query.order_by):
            if order.is_property:
                raise QueryError("with count(), ORDER BY must name a returned column")
            index = columns.index(order.target)
            rows.sort(key=lambda row: sort_key(row[index]), reverse=order.descending)
    else:
        pairs = [(node, [project(item, node) for item in query.returns]) for node in matched]
        for order in reversed(query.order_by):
            if order.is_property:
                pairs.sort(key=lambda p: sort_key(p[0]["properties"].get(order.target)), reverse=order.descending)
            else:
                index = columns.index(order.target)
                pairs.sort(key=lambda p: sort_key(p[1][index]), reverse=order.descending)
        rows = [row for _, row in pairs]

    if limit is not None:
        rows = rows[:limit]
    elapsed_ms = int((time.perf_counter() - started) * 1000)
    return QueryResult(columns, rows, elapsed_ms)


def run_query(
    text: str, parameters: dict[str, Any] | None, scan: Callable[[str | None], Iterable[dict[str, Any]]]
) -> dict[str, Any]:
    """Parse and execute; the real server's ``{results, stats}`` document."""
    return execute(parse(text), parameters or {}, scan).document()
