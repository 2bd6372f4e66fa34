"""`faces`, `faces name`, `faces not`, `faces forget`, and `similar --face`: people on faces."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from phototag import catalogue
from phototag.cli.common import (
    SUBCOMMAND_OPTIONS,
    Subparsers,
    UserError,
    command,
    emit,
    open_index,
    show,
)
from phototag.config import Config
from phototag.library import people
from phototag.library.index import Index
from phototag.pipeline import faces as face_stage
from phototag.records import FaceRecord

TEACH = """\
How it works: `phototag scan` (with faces.enabled: true in the settings) finds the faces in
your photos. `phototag faces` lists groups of similar faces nobody has named yet; name a
group or one photo's face once, and phototag names that person's other faces by comparing
them with every face you named (a threshold measured on your own namings; a face you named
is never changed, and no face gets two names). Names are written into the photos as MWG face
regions, Iptc4xmpExt:PersonInImage and the keyword People|Name, where digiKam, Lightroom,
Immich and exiftool read them; faces other programs named are read as your namings.

examples:
  phototag faces                          groups of unnamed faces, largest first
  phototag faces name 3 "Grandma"         every face of group 3 is Grandma
  phototag faces name IMG_1.jpg "Grandma" the one face of IMG_1.jpg (or --face N)
  phototag faces not IMG_2.jpg --face 2 "Grandma"   face 2 of IMG_2.jpg is not Grandma
  phototag search 'person:Grandma AND beach'
  phototag similar IMG_1.jpg --face       photos with faces like face 1 of IMG_1.jpg
  phototag faces forget --yes             every face record and our regions gone
"""


def _store() -> str:
    """The vector store of the installed embedder: names are compared within it."""
    try:
        return face_stage.installed_store()
    except catalogue.CatalogueError as exc:
        raise UserError(f"faces: {exc}") from None


def _photo_faces(index: Index, photo: Path, number: int | None) -> list[FaceRecord]:
    path = os.path.abspath(photo)
    if index.get(path) is None:
        raise UserError(f"{show(photo)}: not in the index; scan it with faces.enabled: true")
    found = index.faces(path)
    if not found:
        raise UserError(f"{show(photo)}: no faces found in it")
    if number is None:
        if len(found) > 1:
            listed = ", ".join(f"{f.number} {f.name or '?'}" for f in found)
            raise UserError(
                f"{show(photo)} has {len(found)} faces ({listed}): choose with --face N"
            )
        return found
    chosen = [f for f in found if f.number == number]
    if not chosen:
        raise UserError(f"{show(photo)}: no face {number} (it has 1 to {len(found)})")
    return chosen


def _checked(name: str) -> str:
    try:
        return people.check_name(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _report(errors: list[str]) -> int:
    for line in errors:
        print(f"phototag: {line}", file=sys.stderr)
    return 1 if errors else 0


def cmd_faces(args: argparse.Namespace, cfg: Config) -> int:
    store = _store()
    with open_index(cfg, dry_run=False) as index:
        people.refresh(index, cfg, store)  # new faces join groups (incremental)
        faces, vectors = people.store_faces(index, store)
    groups = people.groups(faces, vectors)
    named: dict[str, int] = {}
    for f in faces:
        if f.name:
            named[f.name] = named.get(f.name, 0) + 1
    if args.json:
        for g in groups:
            emit(
                {"group": g.id, "size": g.size, "photo": show(g.photo), "face": g.face},
                as_json=True,
            )
        emit({"people": [{"name": n, "faces": c} for n, c in sorted(named.items())]}, as_json=True)
        return 0
    for g in groups:
        print(
            f"group {g.id}: {g.size} face{'s' * (g.size > 1)}, e.g. {show(g.photo)} (face {g.face})"
        )
    if named:
        print("named: " + ", ".join(f"{n} ({c})" for n, c in sorted(named.items())))
    print(
        f"{len(faces)} faces, {sum(g.size for g in groups)} unnamed in {len(groups)} groups; "
        'name one with `phototag faces name GROUP "Name"`',
        file=sys.stderr,
    )
    return 0


def cmd_name(args: argparse.Namespace, cfg: Config) -> int:
    store = _store()
    with open_index(cfg, dry_run=False) as index:
        if args.target.isdigit() and not Path(args.target).exists():
            if args.face is not None:
                raise UserError("--face N picks a face of a photo, not of a group")
            chosen = people.group_members(people.faces_of(index, store), int(args.target))
            if not chosen:
                raise UserError(f"no group {args.target} of unnamed faces (see `phototag faces`)")
        else:
            chosen = _photo_faces(index, Path(args.target), args.face)
        errors = people.name(index, chosen, _checked(args.name), cfg, store)
        print(f"named {len(chosen)} face{'s' * (len(chosen) > 1)} {args.name!r}")
    return _report(errors)


def cmd_not(args: argparse.Namespace, cfg: Config) -> int:
    store = _store()
    with open_index(cfg, dry_run=False) as index:
        (face,) = _photo_faces(index, args.photo, args.face)
        errors = people.refuse(index, face, _checked(args.name), cfg, store)
        print(f"face {face.number} of {show(args.photo)} is not {args.name!r}")
    return _report(errors)


def cmd_forget(args: argparse.Namespace, cfg: Config) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("faces forget removes every face record and our regions: add --yes")
        answer = input("Remove every face record and the face regions phototag wrote? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed", file=sys.stderr)
            return 0
    with open_index(cfg, dry_run=False) as index:
        count, errors = people.forget(index, cfg)
    print(f"forgot {count} faces; regions you or other programs wrote are kept")
    return _report(errors)


def similar(args: argparse.Namespace, cfg: Config) -> int:
    """`similar PHOTO --face [N]`: the indexed faces most like face N of PHOTO."""
    store = _store()
    with open_index(cfg, dry_run=True) as index:
        (face,) = _photo_faces(index, args.photo, args.face)
        faces, vectors = people.store_faces(index, store)
    query = vectors[[f.id for f in faces].index(face.id)]
    others = [i for i, f in enumerate(faces) if f.id != face.id]
    for m in people.similar([faces[i] for i in others], vectors[others], query, args.k):
        if args.json:
            emit(
                {
                    "path": show(m.photo),
                    "face": m.face,
                    "similarity": m.similarity,
                    "name": m.name or None,
                },
                as_json=True,
            )
        else:
            print(
                f"{m.similarity:.3f}  {show(m.photo)} (face {m.face}{', ' + m.name if m.name else ''})"
            )
    return 0


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "faces",
        cmd_faces,
        "groups of similar unnamed faces; name people once (faces name/not/forget)",
        description="List groups of similar faces nobody has named yet, largest first: each "
        "with its number, size and a photo that shows it.\n\n" + TEACH,
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    fsub = p.add_subparsers(dest="faces_command", metavar="ACTION")

    n = fsub.add_parser(
        "name",
        parents=[SUBCOMMAND_OPTIONS],
        help="name a group of faces, or a photo's face",
        description="Name every face of a group (a number from `phototag faces`) or the face of "
        "a photo (its only face, or --face N); the name then goes to that person's other faces.",
    )
    n.add_argument("target", metavar="GROUP|PHOTO")
    n.add_argument("name", metavar="NAME")
    n.add_argument("--face", type=int, metavar="N", help="which face of PHOTO (from 1, as shown)")
    n.set_defaults(func=cmd_name)

    n = fsub.add_parser(
        "not",
        parents=[SUBCOMMAND_OPTIONS],
        help="say a photo's face is not someone (never proposed again)",
        description="Face N of PHOTO is not NAME: the name goes from it if it had it and is "
        "never proposed for it again; the vote learns from it.",
    )
    n.add_argument("photo", type=Path, metavar="PHOTO")
    n.add_argument("--face", type=int, metavar="N", help="which face (needed when it has several)")
    n.add_argument("name", metavar="NAME")
    n.set_defaults(func=cmd_not)

    n = fsub.add_parser(
        "forget",
        parents=[SUBCOMMAND_OPTIONS],
        help="remove every face record and the regions phototag wrote",
        description="Remove every face from the index (boxes, embeddings' references, names) and "
        "our face regions, PersonInImage names and People keywords from the photos. Regions "
        "you or other programs wrote stay. Asks first; --yes does not.",
    )
    n.add_argument("--yes", action="store_true", help="do not ask")
    n.set_defaults(func=cmd_forget)
