import pytest

from phototag.library.query import And, Not, Or, QueryError, Term, normalise, parse, terms


def t(text: str) -> Term:
    return Term(text)


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("cat", t("cat")),
        ("cat beach", And((t("cat"), t("beach")))),
        ("cat AND beach AND sea", And((t("cat"), t("beach"), t("sea")))),
        ("a OR b AND c", Or((t("a"), And((t("b"), t("c")))))),
        ("a AND b OR c", Or((And((t("a"), t("b"))), t("c")))),
        ("NOT a AND b", And((Not(t("a")), t("b")))),
        ("NOT a OR b", Or((Not(t("a")), t("b")))),
        ("NOT (a OR b)", Not(Or((t("a"), t("b"))))),
        ("-a b", And((Not(t("a")), t("b")))),
        ("NOT NOT a", Not(Not(t("a")))),
        (
            "cat AND (beach OR sea) NOT night",
            And((t("cat"), Or((t("beach"), t("sea"))), Not(t("night")))),
        ),
        ("cat -(beach OR sea)", And((t("cat"), Not(Or((t("beach"), t("sea"))))))),
        ("((cat))", t("cat")),
    ],
)
def test_precedence_and_structure(query: str, tree: object) -> None:
    assert parse(query) == tree


def test_case_insensitive_terms_and_operators() -> None:
    assert parse("Cat and (BEACH or Sea) not Night") == parse("cat AND (beach OR sea) NOT night")


def test_quoted_multi_word_tags_and_quoted_operator_words() -> None:
    assert parse('"Hot  Dog" OR "or"') == Or((t("hot dog"), t("or")))
    assert parse('"hot dog"sea') == And((t("hot dog"), t("sea")))


def test_paths_and_hyphens_inside_words() -> None:
    assert parse("Animal|Bird t-shirt") == And((t("animal|bird"), t("t-shirt")))
    assert parse('"animal | hot dog"') == t("animal|hot dog")


def test_normalise_and_terms() -> None:
    assert normalise("  Animal | Hot   Dog ") == "animal|hot dog"
    assert terms(parse("a (b OR -c) a")) == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("query", "message", "column"),
    [
        ("cat AND (beach", "unclosed '(' at column 9", 8),
        ("cat)", "unmatched ')' at column 4", 3),
        ("cat AND", "expected a term after 'AND' at column 8", 7),
        ("AND cat", "'AND' needs a term before it at column 1", 0),
        ("cat OR OR dog", "'OR' needs a term before it at column 8", 7),
        ("cat (OR dog)", "'OR' needs a term before it at column 6", 5),
        ("cat NOT", "expected a term after 'NOT' at column 8", 7),
        ("a -", "expected a term after '-' at column 4", 3),
        ("()", "expected a term before ')' at column 2", 1),
        ('cat "hot dog', "unclosed '\"' at column 5", 4),
        ('cat ""', "empty tag in quotes at column 5", 4),
        ("animal||bird", "empty level in 'animal||bird' at column 1", 0),
        ("", "empty query at column 1", 0),
        ("   ", "empty query at column 1", 0),
    ],
)
def test_errors_name_the_column(query: str, message: str, column: int) -> None:
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert str(caught.value) == message
    assert caught.value.column == column
    assert "\n" not in str(caught.value)


def test_caret_points_at_the_mistake() -> None:
    with pytest.raises(QueryError) as caught:
        parse("cat AND (beach")
    assert caught.value.caret == "cat AND (beach\n        ^"


def test_person_prefix_is_the_people_keyword_path() -> None:
    assert parse("person:Grandma AND beach") == And((t("people|grandma"), t("beach")))
    assert parse('"person:Aunt  Jo"') == t("people|aunt jo")
    assert parse("person:") == t("people")
