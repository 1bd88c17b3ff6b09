"""The emulator's Cypher subset: parsing, filtering, projection, ordering, counting."""

import pytest

from qilbee_backup.emulator.query import QueryError, compare, execute, parse, run_query

PEOPLE = [
    {"id": 1, "labels": ["Person"], "properties": {"name": "Ada", "age": 36, "city": "London"}},
    {"id": 2, "labels": ["Person"], "properties": {"name": "Alan", "age": 41, "city": "London"}},
    {"id": 3, "labels": ["Person"], "properties": {"name": "Grace", "age": 85, "city": "New York"}},
    {"id": 4, "labels": ["Person"], "properties": {"name": "Linus", "city": "Helsinki"}},
    {"id": 5, "labels": ["Company"], "properties": {"name": "Acme", "age": 12}},
]


def scan(label):
    return [n for n in PEOPLE if label is None or label in n["labels"]]


def rows(cypher, **params):
    return run_query(cypher, params, scan)["results"]


def test_where_comparisons_and_parameters():
    assert rows("MATCH (n:Person) WHERE n.age > 40 RETURN n.name") == [{"n.name": "Alan"}, {"n.name": "Grace"}]
    assert rows("MATCH (n:Person) WHERE n.age >= $min AND n.city = $city RETURN n.name", min=36, city="London") == [
        {"n.name": "Ada"},
        {"n.name": "Alan"},
    ]
    assert rows("match (n:Person) where n.city <> 'London' return n.name") == [
        {"n.name": "Grace"},
        {"n.name": "Linus"},
    ]
    assert rows("MATCH (n:Person) WHERE 50 < n.age RETURN n.name") == [{"n.name": "Grace"}]
    assert rows('MATCH (n:Person) WHERE n.name = "Ada" RETURN n.age') == [{"n.age": 36}]


def test_null_and_mixed_kinds_never_match():
    # Linus has no age: neither = nor <> holds for null, as in Cypher.
    assert [r["n.name"] for r in rows("MATCH (n:Person) WHERE n.age <> 36 RETURN n.name")] == ["Alan", "Grace"]
    assert rows("MATCH (n:Person) WHERE n.age = '36' RETURN n.name") == []
    assert rows("MATCH (n:Person) WHERE n.age = null RETURN n.name") == []
    assert compare(1, "=", 1.0) and not compare(True, "=", 1)


def test_return_node_and_alias_and_missing_property():
    result = rows("MATCH (n:Company) RETURN n, n.city AS town")
    assert result == [{"n": PEOPLE[4], "town": None}]


def test_order_by_multiple_keys_and_limit():
    result = rows("MATCH (n:Person) RETURN n.name, n.age ORDER BY n.city DESC, n.age LIMIT 3")
    assert [r["n.name"] for r in result] == ["Grace", "Ada", "Alan"]
    # Nulls sort last ascending, first descending (Neo4j's order).
    assert [r["n.name"] for r in rows("MATCH (n:Person) RETURN n.name ORDER BY n.age")][-1] == "Linus"
    assert rows("MATCH (n:Person) RETURN n.name AS who ORDER BY who DESC LIMIT $k", k=1) == [{"who": "Linus"}]


def test_count_with_and_without_grouping():
    assert rows("MATCH (n:Person) RETURN count(n)") == [{"count(n)": 4}]
    assert rows("MATCH (n:Nobody) RETURN count(*) AS total") == [{"total": 0}]
    grouped = rows("MATCH (n:Person) RETURN n.city AS city, count(n) AS people ORDER BY people DESC, city")
    assert grouped == [
        {"city": "London", "people": 2},
        {"city": "Helsinki", "people": 1},
        {"city": "New York", "people": 1},
    ]


def test_match_without_label_scans_every_node():
    assert rows("MATCH (n) RETURN count(n)") == [{"count(n)": 5}]


def test_stats_shape():
    document = run_query("MATCH (n:Person) RETURN n.name LIMIT 1", None, scan)
    assert set(document["stats"]) == {
        "nodesCreated", "nodesDeleted", "relationshipsCreated", "relationshipsDeleted", "executionTimeMs",
    }
    assert isinstance(document["stats"]["executionTimeMs"], int)


@pytest.mark.parametrize(
    "cypher",
    [
        "CREATE (n:Person) RETURN n",
        "MATCH (n:Person) RETURN m",
        "MATCH (n:Person) WHERE n.age > RETURN n",
        "MATCH (n:Person)-[:KNOWS]->(m) RETURN n",
        "MATCH (n:Person) RETURN n.name ORDER BY nothing",
        "MATCH (n:Person) RETURN n LIMIT -1",
        "MATCH (n:Person) WHERE n.a = 1 OR n.b = 2 RETURN n",
        "MATCH (n:Person) RETURN n.name, n.name",
        "MATCH (n:Person) RETURN n ~",
    ],
)
def test_outside_the_supported_shape_is_a_parse_error(cypher):
    with pytest.raises(QueryError):
        parse(cypher)


def test_missing_parameter_is_an_execution_error():
    with pytest.raises(QueryError, match=r"\$age"):
        execute(parse("MATCH (n:Person) WHERE n.age = $age RETURN n"), {}, scan)


def test_string_escapes():
    query = parse(r"MATCH (n) WHERE n.name = 'O\'Brien' RETURN n")
    assert query.where[0].right.value == "O'Brien"
