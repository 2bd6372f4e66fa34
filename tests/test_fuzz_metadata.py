"""Fuzzing the file-tag layer (files/) with mutated JPEG, PNG and XMP inputs (issue 17).

Whatever the bytes, read/write/undo either work or raise MetadataError (one line for the
user), and when they raise, neither the photo nor its sidecar has changed. A few dozen
examples by default (seconds); the slow-marked run tries many more.

Some mutated XMP declarations re-map exiv2's process-wide namespace table; these tests once
broke keyword writes in later test files, which is why `metadata._open_bytes` binds our
prefixes back after every parse (test_metadata's rebinding test).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from phototag.config import WriteConfig
from phototag.files import metadata
from phototag.records import Tag

TAGS = [Tag("animal|mammal|cat", 0.9), Tag("kite", 0.4)]
XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:lr="http://ns.adobe.com/lightroom/1.0/"><dc:subject><rdf:Bag><rdf:li>mine</rdf:li>'
    "</rdf:Bag></dc:subject><lr:hierarchicalSubject><rdf:Bag><rdf:li>places|mine</rdf:li>"
    "</rdf:Bag></lr:hierarchicalSubject></rdf:Description></rdf:RDF></x:xmpmeta>\n"
    '<?xpacket end="w"?>'
).encode()


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    img = Image.new("RGB", (16, 12), (200, 60, 30))
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        img.save(out, "PNG", pnginfo=info)
    else:
        img.save(out, "JPEG", xmp=XMP)
    return out.getvalue()


SEEDS = {"photo.jpg": _image("JPEG"), "photo.png": _image("PNG"), "photo.jpg.xmp": XMP}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return name, bytes(data)


def _state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _check(tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]) -> None:
    name, data = case
    folder = tmp_path_factory.mktemp("fuzz")
    if name.endswith(".xmp"):  # a mutated sidecar beside an intact photo
        (folder / "photo.jpg").write_bytes(SEEDS["photo.jpg"])
    (folder / name).write_bytes(data)
    photo = folder / name.removesuffix(".xmp")
    cfg = WriteConfig()
    for action in (
        lambda: metadata.read(photo, cfg),
        lambda: metadata.write(photo, TAGS, "fuzz-1", cfg),
        lambda: metadata.undo(photo, cfg),
        lambda: metadata.accept(photo, Tag("places|beach"), cfg),
    ):
        before = _state(folder)
        try:
            action()
        except metadata.MetadataError as exc:
            assert "\n" not in str(exc)
            assert _state(folder) == before, "a reported error changed a file"
        assert not [p for p in folder.iterdir() if p.name.endswith(".phototag-tmp")]


FAST = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FAST
@given(case=mutated())
def test_mutated_inputs_never_escape_or_damage(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]
) -> None:
    _check(tmp_path_factory, case)


@pytest.mark.slow
@settings(FAST, max_examples=1500, derandomize=False)
@given(case=mutated())
def test_mutated_inputs_never_escape_or_damage_long(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]
) -> None:
    _check(tmp_path_factory, case)
