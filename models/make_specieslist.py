#!/usr/bin/env python3
"""Build `inat_bird_tags.tsv` / `inat_insect_tags.tsv`: iNaturalist species as tag paths.

Each label is `Genus species (Common Name)`. A species is filed under its domain root and
the group its common name ends in, the word people search for: "Athene cunicularia
(Burrowing Owl)" -> `animal|bird|owl|Burrowing Owl`, "Western Screech-Owl" -> owl too,
"Apis mellifera (Honey Bee)" -> `animal|insect|bee|Honey Bee`. The last label,
`background`, gets no path: the specialist then says nothing. A species with no common
name keeps its Latin name, directly under the root.

    python3 models/make_specieslist.py inat_bird_labels.txt animal|bird > models/inat_bird_tags.tsv
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

VERSION = "1"
_LABEL = re.compile(
    r"(?P<latin>[^()]+?) \((?P<common>.*)\)\Z"
)  # may hold "(American)", or be empty


def path(label: str, root: str) -> str:
    """The tag path of one label; "" for background."""
    match = _LABEL.match(label)
    if match is None:
        if label != "background":
            raise SystemExit(f"unexpected label {label!r}")
        return ""
    common = match["common"].strip()
    if not common:  # "Syntomoides imaon ()": the Latin name, with no group to file it under
        return f"{root}|{match['latin'].strip()}"
    base = re.sub(r"\s*\(.*\)", "", common)  # "Northern Harrier (American)" is a harrier
    group = re.split(r"[\s-]+", base)[-1].casefold()
    return f"{root}|{group}|{common}"


def main(labels: Path, root: str) -> None:
    lines = labels.read_text(encoding="utf-8").splitlines()
    print(f"# version: {VERSION}")
    print(f"# {labels.name} -> tag paths under {root}, made by make_specieslist.py")
    print("# index\twnid\tlabel\ttag paths")
    for i, label in enumerate(lines):
        print(f"{i}\t-\t{label}\t{path(label, root)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
