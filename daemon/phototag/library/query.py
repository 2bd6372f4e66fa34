"""The search language: `cat AND (beach OR sea) NOT night`.

Terms are tag names or hierarchy paths (`animal|bird`), compared case-insensitively;
`"hot dog"` quotes a multi-word tag. Operators: `OR`, `AND` (also implied between two
terms), `NOT` or a leading `-`, and parentheses; NOT binds tighter than AND, AND tighter
than OR. Operator words are recognised in any case; quote them (`"or"`) to search for a
tag with that name. `place:Lisbon` finds Lisbon among the place keywords, `person:Ann`
the person named Ann on faces (the keyword `People|Ann`). Parsing is separate from evaluation (`tagindex.py`) so the CLI can
report a mistake with its column before touching the index.

What both backends match a query against is here too: the terms a tag path is filed under
(`term_keys`) and the `Filter` beside a query. None of it needs numpy, so neither does a
one-off `phototag search` (tests/test_cli_imports.py): numpy's import was a third of it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from phototag.records import LEVEL_SEP, Source

if TYPE_CHECKING:  # dates are numpy's, made only when a search has --from or --to
    import numpy as np


class QueryError(ValueError):
    """A query that cannot be parsed; `column` is the 0-based position of the mistake."""

    def __init__(self, message: str, query: str, column: int) -> None:
        super().__init__(f"{message} at column {column + 1}")  # people count columns from 1
        self.query = query
        self.column = column

    @property
    def caret(self) -> str:
        """The query and a caret under the mistake, for printing below the one-line message."""
        return f"{self.query}\n{' ' * self.column}^"


@dataclass(frozen=True)
class Term:
    """A tag name or a path of names from the root (`animal|bird`), normalised."""

    text: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Term | Not | And | Or

_SPACE = re.compile(r"\s+")
PLACE = "place:"  # the search prefix for places
PLACES_ROOT = "places"  # the default root of place keywords (config.PlacesConfig.root)
PERSON = "person:"  # the search prefix for people named on faces
PEOPLE_ROOT = "people"  # the default root of their keywords, People|Name


def normalise(text: str) -> str:
    """The form tags and terms are compared in: lower case, single spaces, levels trimmed.

    Used for both sides of the comparison so `Hot  Dog` finds `hot dog`.
    """
    levels = (_SPACE.sub(" ", level).strip() for level in text.split(LEVEL_SEP))
    return LEVEL_SEP.join(levels).lower()


@functools.lru_cache(maxsize=1 << 16)
def term_keys(path: str) -> tuple[str, ...]:
    """The terms a tag path is found by: each level's name and each prefix path."""
    return tuple(dict.fromkeys([*normalise(path).split(LEVEL_SEP), *path_keys(path)]))


def path_keys(path: str) -> tuple[str, ...]:
    """The hierarchical names of a tag path: every prefix from the root, itself included."""
    levels = normalise(path).split(LEVEL_SEP)
    return tuple(LEVEL_SEP.join(levels[: i + 1]) for i in range(len(levels)))


SourceFilter = Literal["user", "auto", "any"]
SOURCES: dict[SourceFilter, tuple[Source, ...]] = {
    "user": ("user",),
    "auto": ("auto",),
    "any": ("user", "auto"),
}


@dataclass(frozen=True)
class Filter:
    """Restrictions applied with a query; dates are a half-open range [taken_from, taken_before)."""

    source: SourceFilter = "any"
    min_score: float = 0.0
    taken_from: np.datetime64 | None = None
    taken_before: np.datetime64 | None = None
    folder: str | None = None  # this folder and everything below it


def terms(node: Node) -> set[str]:
    """Every term a query mentions (for highlighting or checking them against the vocabulary)."""
    if isinstance(node, Term):
        return {node.text}
    if isinstance(node, Not):
        return terms(node.operand)
    return set().union(*(terms(child) for child in node.operands))


def replace_terms(node: Node, mapping: dict[str, str]) -> Node:
    """`node` with each term in `mapping` replaced (a plural read as the tag that exists)."""
    if isinstance(node, Term):
        return Term(mapping.get(node.text, node.text))
    if isinstance(node, Not):
        return Not(replace_terms(node.operand, mapping))
    return type(node)(tuple(replace_terms(child, mapping) for child in node.operands))


def number_variants(term: str) -> list[str]:
    """The singular and plural forms of a term's last word: cats/cat, boxes/box, puppies/puppy."""
    head, sep, word = term.rpartition(" ")
    forms = [word + "s", word + "es"]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s"):
        forms.append(word[:-1])
    if word.endswith("y"):
        forms.append(word[:-1] + "ies")
    return [head + sep + form for form in dict.fromkeys(forms) if form and form != word]


@dataclass(frozen=True)
class _Token:
    kind: str  # "term", "and", "or", "not", "(", ")", "end"
    text: str
    column: int


_OPERATORS = {"and": "and", "or": "or", "not": "not"}
_WORD = re.compile(r'[^\s()"]+')


def _tokenise(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(query):
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch == "-":
            tokens.append(_Token("not", ch, i))
            i += 1
        elif ch == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise QueryError("unclosed '\"'", query, i)
            tokens.append(_term_token(query[i + 1 : end], query, i))
            i = end + 1
        else:
            word = _WORD.match(query, i)
            assert word is not None  # ch is none of space, parentheses, quote
            text = word.group()
            kind = _OPERATORS.get(text.lower())
            tokens.append(_Token(kind, text, i) if kind else _term_token(text, query, i))
            i = word.end()
    tokens.append(_Token("end", "", len(query)))
    return tokens


def _term_token(raw: str, query: str, column: int) -> _Token:
    text = normalise(raw)
    if not text:
        raise QueryError("empty tag in quotes", query, column)
    if "" in text.split(LEVEL_SEP):
        raise QueryError(f"empty level in {raw!r}", query, column)
    return _Token("term", text, column)


class _Parser:
    """Recursive descent over: or := and (OR and)*; and := unary (AND? unary)*;
    unary := (NOT | -) unary | term | '(' or ')'."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokenise(query)
        self.pos = 0

    def parse(self) -> Node:
        if self.peek.kind == "end":
            raise QueryError("empty query", self.query, 0)
        node = self.parse_or()
        if self.peek.kind == ")":
            raise QueryError("unmatched ')'", self.query, self.peek.column)
        assert self.peek.kind == "end"  # parse_or stops only at ')' or the end
        return node

    @property
    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while self.peek.kind == "or":
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_unary()]
        while self.peek.kind in ("and", "not", "term", "("):
            if self.peek.kind == "and":
                self.take()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Node:
        token = self.take()
        if token.kind == "not":
            return Not(self.parse_unary())
        if token.kind == "term":
            if token.text.startswith(PERSON):
                return person(token.text)
            return place(token.text) if token.text.startswith(PLACE) else Term(token.text)
        if token.kind == "(":
            node = self.parse_or()
            if self.peek.kind != ")":
                raise QueryError("unclosed '('", self.query, token.column)
            self.take()
            return node
        raise self.expected_term(token)

    def expected_term(self, token: _Token) -> QueryError:
        """Say what went wrong where a term should have been, naming the operator left hanging."""
        before = self.tokens[self.pos - 2] if self.pos >= 2 else None
        if token.kind in ("and", "or") and (before is None or before.kind in ("(", "and", "or")):
            return QueryError(f"'{token.text}' needs a term before it", self.query, token.column)
        if before is not None and before.kind in ("and", "or", "not"):
            return QueryError(f"expected a term after '{before.text}'", self.query, token.column)
        if token.kind == ")":
            return QueryError("expected a term before ')'", self.query, token.column)
        return QueryError("expected a term", self.query, token.column)


def place(text: str) -> Node:
    """`place:Berlin`: Berlin among the place keywords (`places|Germany|Berlin`), not any tag
    named Berlin. Place keywords under a root other than the default are found by name alone."""
    name = text.removeprefix(PLACE)
    return And((Term(PLACES_ROOT), Term(name))) if name else Term(PLACES_ROOT)


def person(text: str) -> Node:
    """`person:Grandma`: the keyword `People|Grandma` of a named face, not any tag Grandma
    (plain `Grandma` finds both)."""
    name = text.removeprefix(PERSON)
    return Term(f"{PEOPLE_ROOT}{LEVEL_SEP}{name}" if name else PEOPLE_ROOT)


def parse(query: str) -> Node:
    """Parse a search query into its tree; raises QueryError with the column of the mistake."""
    return _Parser(query).parse()
