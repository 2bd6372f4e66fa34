"""Mulan multi-label benchmarks: ARFF files (dense or sparse) plus an XML list of labels.

A benchmark folder holds `*train*.arff`, `*test*.arff` and one `*.xml` whose
`<label name=...>` elements name the label attributes; those are the *last* attributes of
each ARFF file, the features come first. Numeric and {0,1}-nominal attributes only: that is
what the image-annotation sets use, and anything else is refused with a clear message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ArffError(ValueError):
    """The file is not the ARFF this reader understands."""


@dataclass(frozen=True)
class Split:
    features: np.ndarray  # float64 [N, F]
    labels: np.ndarray  # bool [N, T]

    def take(self, rows: np.ndarray) -> Split:
        return Split(self.features[rows], self.labels[rows])


@dataclass(frozen=True)
class Dataset:
    name: str
    tags: tuple[str, ...]
    train: Split
    test: Split


def _value(token: str, where: str) -> float:
    token = token.strip().strip("'\"")
    if token == "?":
        return float("nan")
    try:
        return float(token)
    except ValueError:
        raise ArffError(f"{where}: non-numeric value {token!r}") from None


def _attribute(rest: str, where: str) -> tuple[str, str]:
    """(name, type) of an @attribute line's remainder; names may be quoted."""
    if rest[:1] in ("'", '"'):
        end = rest.find(rest[0], 1)
        if end < 0:
            raise ArffError(f"{where}: unclosed quote in attribute name")
        name, kind = rest[1:end], rest[end + 1 :].strip()
    else:
        name, _, kind = rest.partition(" ")
        kind = kind.strip()
    if not kind:
        raise ArffError(f"{where}: attribute without a type")
    return name, kind


def parse_arff(text: str, where: str = "<arff>") -> tuple[list[str], np.ndarray]:
    """Attribute names and the data matrix [rows, attributes] of an ARFF document."""
    names: list[str] = []
    lines = iter(text.splitlines())
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        head = line.split(None, 1)[0].lower()
        if head == "@attribute":
            name, kind = _attribute(line[len(head) :].strip(), f"{where}:{number}")
            if not (kind.lower() in ("numeric", "real", "integer") or kind.startswith("{")):
                raise ArffError(f"{where}:{number}: unsupported attribute type {kind!r}")
            names.append(name)
        elif head == "@data":
            break
    else:
        raise ArffError(f"{where}: no @data section")
    if not names:
        raise ArffError(f"{where}: no attributes")
    rows: list[np.ndarray] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("{"):
            row = np.zeros(len(names))
            body = line.strip("{}").strip()
            for item in body.split(",") if body else []:
                key, _, val = item.strip().partition(" ")
                try:
                    col = int(key)
                except ValueError:
                    raise ArffError(f"{where}: bad sparse entry {item.strip()!r}") from None
                if not 0 <= col < len(names):
                    raise ArffError(f"{where}: sparse index {col} outside {len(names)} attributes")
                row[col] = _value(val, where)
        else:
            tokens = line.split(",")
            if len(tokens) != len(names):
                raise ArffError(f"{where}: row has {len(tokens)} values, expected {len(names)}")
            row = np.array([_value(tok, where) for tok in tokens])
        rows.append(row)
    data = np.vstack(rows) if rows else np.zeros((0, len(names)))
    return names, data


def read_labels(xml_path: Path) -> tuple[str, ...]:
    """Label names, in order, from a Mulan XML header."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ArffError(f"{xml_path}: cannot read label list: {exc}") from exc
    names = tuple(el.get("name", "") for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "label")
    if not names or "" in names:
        raise ArffError(f"{xml_path}: no <label name=...> elements")
    return names


def _split(path: Path, tags: tuple[str, ...]) -> Split:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArffError(f"{path}: cannot read: {exc.strerror}") from exc
    names, data = parse_arff(text, str(path))
    n_tags = len(tags)
    if tuple(names[-n_tags:]) != tags:
        raise ArffError(f"{path}: the last {n_tags} attributes are not the labels of the XML file")
    return Split(data[:, :-n_tags], data[:, -n_tags:] > 0)


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise ArffError(f"{folder}: expected one {pattern} file, found {len(found)}")
    return found[0]


def load_dataset(folder: Path) -> Dataset:
    """A benchmark folder's fixed train/test split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArffError(f"{folder}: no such benchmark folder")
    tags = read_labels(_one(folder, "*.xml"))
    train = _split(_one(folder, "*train*.arff"), tags)
    test = _split(_one(folder, "*test*.arff"), tags)
    if train.features.shape[1] != test.features.shape[1]:
        raise ArffError(f"{folder}: train and test have different features")
    return Dataset(folder.name, tags, train, test)
