"""Model catalogue: entries, import, resolve and pull against a local HTTP server."""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

import onnxruntime as ort
import pytest
import yaml
from localserver import QuietHandler, serve

from phototag import catalogue
from phototag.catalogue import CatalogueError, ModelMissing

SHARED = Path(__file__).parents[1].parent / "shared" / "models"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{SHARED} (the reference models) is absent"
)
NAME = "mobilenet-v2"
OLD, NEW = catalogue.find(NAME, "tf1-quant"), catalogue.find(NAME, "tf2-ptq")


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv(catalogue.MIRROR_ENV, raising=False)
    return tmp_path / "data" / "phototag" / "models"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_handler(
    root: Path, cap: int = 0, drops: int = 0, honour_range: bool = True, stall_s: float = 0.0
) -> type[QuietHandler]:
    """Serves files from `root`; the first `drops` responses send only `cap` bytes, then
    stall for `stall_s` seconds (if set) and drop the connection."""

    class Handler(QuietHandler):
        ranges: ClassVar[list[str | None]] = []  # the Range header of each request, in order
        drops_left = drops

        def do_GET(self) -> None:
            asked = self.headers.get("Range")
            self.ranges.append(asked)
            path = root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            match = re.fullmatch(r"bytes=(\d+)-", asked or "")
            start = int(match[1]) if match and honour_range else 0
            if start:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if Handler.drops_left > 0:
                Handler.drops_left -= 1
                self.wfile.write(body[:cap])
                self.wfile.flush()
                time.sleep(stall_s)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


# --- entries ---------------------------------------------------------------------------


@needs_shared
def test_catalogue_pins_the_reference_models() -> None:
    # the int8 detector is derived, not shared: tests/test_detect.py makes it and imports it
    derived = {"coco_nanodet_int8.onnx", "coco_nanodet_rect.onnx"}
    assert {s.file for s in catalogue.entries() if not (SHARED / s.file).exists()} == derived
    for spec in catalogue.entries():
        path = SHARED / spec.file
        if spec.file in derived:
            continue
        assert path.stat().st_size == spec.size
        assert sha256(path) == spec.sha256
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (inp,) = session.get_inputs()
        assert inp.name == spec.input.name
        assert inp.type == f"tensor({spec.input.dtype})"
        assert inp.shape[1:] == [spec.input.size, spec.input.size, 3]  # NHWC
        assert set(spec.outputs) <= {o.name for o in session.get_outputs()}


def test_entries_are_well_formed() -> None:
    specs = catalogue.entries()
    assert {s.ref for s in specs} == {
        "mobilenet-v2@tf1-quant",
        "mobilenet-v2@tf2-ptq",
        "coco-nanodet@g-416",
        "coco-nanodet@g-416-int8",
        "coco-nanodet@g-416-rect",
        "efficientnet-lite0@torch-1",
        "inat-bird@coral-quant",
        "inat-insect@coral-quant",
        "blazeface@full-range",
        "faceres@hse-vggface2",
    }
    assert NEW.order > OLD.order
    for spec in specs:
        assert (
            spec.url
            == f"https://github.com/phototag/phototag-models/releases/download/v1/{spec.file}"
        )
        assert (spec.input.dtype, spec.input.layout, spec.input.colour) == ("uint8", "NHWC", "RGB")
        if spec.kind == "detector":
            assert (spec.outputs, spec.labels) == (("scores", "boxes"), "coco")
        elif spec.kind == "specialist":
            assert spec.labels == spec.file.removesuffix(".onnx")  # inat_bird -> inat_bird_tags.tsv
        elif spec.kind.startswith("face-"):
            assert spec.labels == "none"
        else:  # imagenet: 1001 outputs, background first; imagenet1k: the 1000 classes
            assert spec.outputs == ("probabilities", "embedding")
            assert spec.labels in ("imagenet", "imagenet1k")
        if spec.kind == "face-embedder":  # research-only weights: said plainly, first
            assert spec.licence.startswith("RESEARCH USE ONLY")
        else:
            assert spec.licence.startswith("Apache-2.0")


def shipped_entry() -> dict:
    entry = files("phototag.models") / "mobilenet-v2@tf1-quant.yaml"
    return yaml.safe_load(entry.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("sha256"), "missing sha256"),
        (lambda d: d.update(colour_order="RGB"), "unknown key colour_order"),
        (lambda d: d.update(sha256="abc123"), "sha256 'abc123' must match"),
        (lambda d: d.update(file="../../evil.onnx"), "file '../../evil.onnx' must match"),
        (lambda d: d.update(url="https://example.org/other.onnx"), "url must be https://"),
        (lambda d: d.update(size="big"), "size must be int"),
        (lambda d: d.update(order=True), "order must be int"),
        (lambda d: d["input"].update(dtype="int8"), "input: dtype must be one of uint8, float32"),
        (lambda d: d["input"].pop("size"), "input: missing size"),
        (lambda d: d["input"].update(stride=100), "input.stride must divide input.size"),
        (lambda d: d["input"].update(stride="32"), "input: stride must be int"),
        (lambda d: d.update(outputs=[]), "outputs must be a non-empty list"),
    ],
)
def test_parse_refuses_bad_entries(change, message: str) -> None:
    raw = shipped_entry()
    change(raw)
    with pytest.raises(CatalogueError, match=re.escape(message)) as info:
        catalogue.parse(yaml.safe_dump(raw), "bad.yaml")
    assert str(info.value).startswith("bad.yaml: ")
    assert "\n" not in str(info.value)


def test_parse_refuses_broken_yaml() -> None:
    with pytest.raises(CatalogueError, match=r"^x.yaml: not valid YAML: [^\n]*$"):
        catalogue.parse("name: [unclosed\n", "x.yaml")


def test_find() -> None:
    assert catalogue.find(NAME) == NEW
    assert catalogue.find(NAME, "tf1-quant") == OLD
    assert catalogue.split_ref("mobilenet-v2@tf1-quant") == (NAME, "tf1-quant")
    assert catalogue.split_ref("mobilenet-v2") == (NAME, None)
    with pytest.raises(
        CatalogueError,
        match=r"unknown model 'resnet' \(known: blazeface, coco-nanodet, efficientnet-lite0, "
        r"faceres, inat-bird, inat-insect, mobilenet-v2\)",
    ):
        catalogue.find("resnet")
    with pytest.raises(CatalogueError, match=r"known: tf1-quant, tf2-ptq"):
        catalogue.find(NAME, "v9")


# --- import and resolve ------------------------------------------------------------------


@needs_shared
def test_import_and_resolve_newest_installed(data_home: Path) -> None:
    assert catalogue.installed() == []
    old = catalogue.import_file(SHARED / OLD.file)
    assert old.path == data_home / OLD.file
    assert sha256(old.path) == OLD.sha256
    assert catalogue.resolve(NAME, None) == old  # the only one installed
    new = catalogue.import_file(SHARED / NEW.file, name=NAME)
    assert catalogue.resolve(NAME, None) == new
    assert catalogue.resolve(NAME, "tf1-quant") == old
    assert sorted(m.spec.ref for m in catalogue.installed()) == [OLD.ref, NEW.ref]
    assert sorted(p.name for p in data_home.iterdir()) == sorted([OLD.file, NEW.file])


@needs_shared
def test_import_refuses_unknown_files(tmp_path: Path, data_home: Path) -> None:
    truncated = tmp_path / "model.onnx"
    truncated.write_bytes((SHARED / OLD.file).read_bytes()[:-1])
    with pytest.raises(
        CatalogueError,
        match=r"model.onnx: not a known catalogue model file \(sha256 [0-9a-f]{16}\.\.\.\)",
    ):
        catalogue.import_file(truncated)
    with pytest.raises(CatalogueError, match="unknown model 'resnet'"):
        catalogue.import_file(SHARED / OLD.file, name="resnet")
    with pytest.raises(CatalogueError, match=r"missing\.onnx: No such file or directory$"):
        catalogue.import_file(tmp_path / "missing.onnx")
    assert list(data_home.iterdir()) == []  # no temporary files, nothing installed
    assert catalogue.installed() == []


def test_unwritable_models_folder_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))  # the data dir would sit under a file
    with pytest.raises(CatalogueError, match=r"file-not-folder/phototag/models: Not a directory$"):
        catalogue.import_file(blocker)


def test_resolve_missing_says_how_to_get_it(data_home: Path) -> None:
    with pytest.raises(ModelMissing) as info:
        catalogue.resolve(NAME, None)
    message = str(info.value)
    assert "`phototag models pull mobilenet-v2`" in message
    assert "`phototag models import FILE`" in message
    assert "\n" not in message
    with pytest.raises(ModelMissing, match="`phototag models pull mobilenet-v2@tf1-quant`"):
        catalogue.resolve(NAME, "tf1-quant")
    # A file of the wrong size under the final name is not an installed model.
    data_home.mkdir(parents=True)
    (data_home / OLD.file).write_bytes(b"not a model")
    with pytest.raises(ModelMissing):
        catalogue.resolve(NAME, "tf1-quant")


def test_resolve_unknown_model_is_not_missing() -> None:
    with pytest.raises(CatalogueError, match="unknown model") as info:
        catalogue.resolve("resnet", None)
    assert not isinstance(info.value, ModelMissing)


# --- pull --------------------------------------------------------------------------------


def test_download_url_honours_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    assert catalogue.download_url(OLD) == OLD.url
    monkeypatch.setenv(catalogue.MIRROR_ENV, "http://models.internal/phototag/")
    assert catalogue.download_url(OLD) == f"http://models.internal/phototag/{OLD.file}"
    monkeypatch.setenv(catalogue.MIRROR_ENV, "/srv/models")
    with pytest.raises(CatalogueError, match="must be an http:// or https:// URL"):
        catalogue.download_url(OLD)


@needs_shared
def test_pull_downloads_verifies_and_reports_progress(
    monkeypatch: pytest.MonkeyPatch, data_home: Path
) -> None:
    handler = model_handler(SHARED)
    seen: list[tuple[int, int]] = []
    with serve(handler) as base:
        monkeypatch.setenv(catalogue.MIRROR_ENV, base)
        model = catalogue.pull(NAME, progress=lambda done, total: seen.append((done, total)))
        assert model.spec == NEW  # newest in the catalogue
        assert sha256(model.path) == NEW.sha256
        assert handler.ranges == [None]
        assert seen[0] == (0, NEW.size) and seen[-1] == (NEW.size, NEW.size)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert catalogue.pull(NAME) == model  # already installed and verified: no request
        assert handler.ranges == [None]
    assert sorted(p.name for p in data_home.iterdir()) == [NEW.file]


@needs_shared
@pytest.mark.parametrize("honour_range", [True, False])
def test_pull_resumes_a_dropped_connection(
    monkeypatch: pytest.MonkeyPatch, data_home: Path, honour_range: bool
) -> None:
    half = OLD.size // 2
    handler = model_handler(SHARED, cap=half, drops=1, honour_range=honour_range)
    with serve(handler) as base:
        monkeypatch.setenv(catalogue.MIRROR_ENV, base)
        model = catalogue.pull(NAME, "tf1-quant")
    assert handler.ranges == [None, f"bytes={half}-"]  # a server ignoring Range sends it all
    assert sha256(model.path) == OLD.sha256
    assert sorted(p.name for p in data_home.iterdir()) == [OLD.file]


@needs_shared
def test_pull_keeps_the_part_file_and_resumes_next_time(
    monkeypatch: pytest.MonkeyPatch, data_home: Path
) -> None:
    quarter = OLD.size // 4
    flaky = model_handler(SHARED, cap=quarter, drops=catalogue.ATTEMPTS)
    with serve(flaky) as base:
        monkeypatch.setenv(catalogue.MIRROR_ENV, base)
        with pytest.raises(CatalogueError, match=r"interrupted .*run the same command again"):
            catalogue.pull(NAME, "tf1-quant")
    assert not (data_home / OLD.file).exists()
    assert (data_home / f"{OLD.file}.part").stat().st_size == 3 * quarter
    good = model_handler(SHARED)
    with serve(good) as base:
        monkeypatch.setenv(catalogue.MIRROR_ENV, base)
        model = catalogue.pull(NAME, "tf1-quant")
    assert good.ranges == [f"bytes={3 * quarter}-"]
    assert sha256(model.path) == OLD.sha256
    assert sorted(p.name for p in data_home.iterdir()) == [OLD.file]


@needs_shared
def test_pull_resumes_after_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    half = OLD.size // 2
    handler = model_handler(SHARED, cap=half, drops=1, stall_s=3.0)
    with serve(handler) as base:
        monkeypatch.setenv(catalogue.MIRROR_ENV, base)
        start = time.monotonic()
        model = catalogue.pull(NAME, "tf1-quant", stall_timeout_s=0.3)
        assert time.monotonic() - start < 2.0
    # Resumes from what reached the part file: bytes read before the stall may be lost.
    assert handler.ranges[0] is None
    assert 0 < int(re.fullmatch(r"bytes=(\d+)-", handler.ranges[1])[1]) <= half
    assert len(handler.ranges) == 2
    assert sha256(model.path) == OLD.sha256


@needs_shared
def test_pull_deletes_a_corrupted_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_home: Path
) -> None:
    served = tmp_path / "mirror"
    served.mkdir()
    data = bytearray((SHARED / OLD.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (served / OLD.file).write_bytes(bytes(data))
    with serve(model_handler(served)) as base:
        monkeypatch.setenv(catalogue.MIRROR_ENV, base)
        with pytest.raises(
            CatalogueError,
            match=r"has sha256 [0-9a-f]{16}\.\.\., expected e3685a114d7f0f6e\.\.\.; deleted it",
        ):
            catalogue.pull(NAME, "tf1-quant")
    assert list(data_home.iterdir()) == []


@needs_shared
def test_pull_refuses_wrong_size_and_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_home: Path
) -> None:
    served = tmp_path / "mirror"
    served.mkdir()
    shutil.copyfile(SHARED / OLD.file, served / OLD.file)
    with (served / OLD.file).open("ab") as f:
        f.write(b"trailing junk")
    with serve(model_handler(served)) as base:
        monkeypatch.setenv(catalogue.MIRROR_ENV, base)
        with pytest.raises(
            CatalogueError, match=f"offers {OLD.size + 13} bytes, catalogue says {OLD.size}"
        ):
            catalogue.pull(NAME, "tf1-quant")
        with pytest.raises(CatalogueError, match=r"HTTP 404"):
            catalogue.pull(NAME, "tf2-ptq")
    assert catalogue.installed() == []
    assert not (data_home / OLD.file).exists()
