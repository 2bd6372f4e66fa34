"""How long a threshold-only `phototag refine` of N indexed photos takes.

The index is built as `phototag scan` leaves it, fast: real photos are tagged once with the
real model (coco256 by default), then each photo's CNN outputs and tags are replicated onto N
small JPEG files that carry those tags in their metadata. The tagging threshold is then
changed and `phototag refine` is run in process, timed from start to end; no image is decoded
(the benchmark makes decoding raise to prove it).

    .venv/bin/python bench/refine_benchmark.py --photos 1000 10000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from phototag import catalogue, cli
from phototag.config import Config
from phototag.files import metadata
from phototag.library.index import PhotoRecord, open_index
from phototag.pipeline import decode, tagger
from phototag.pipeline.runner import Pipeline

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@dataclass
class Source:
    """One really tagged photo: its record and its stored class probabilities."""

    record: PhotoRecord
    probabilities: np.ndarray


def tag_sources(photos: list[Path], folder: Path, cfg: Config) -> list[Source]:
    """Copy the photos into `folder` and tag them with the real pipeline and model."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for photo in photos:
        copies.append(folder / photo.name)
        shutil.copyfile(photo, copies[-1])
        copies[-1].chmod(0o644)
    model = tagger.load(cfg)
    with open_index(cfg.index_dir) as index:
        failed = [o for o in Pipeline(cfg, model, index, force=True).run(copies) if not o.ok]
        if failed:
            raise RuntimeError(f"{failed[0].path}: {failed[0].error}")
        records = [r for r in (index.get(p) for p in copies) if r is not None]
        rows = index.vectors(model.probability_store, records, model.labelmap.n_outputs)
        return [Source(r, row) for r, row in zip(records, rows, strict=True)]


def synthesise(sources: list[Source], folder: Path, n: int, cfg: Config) -> None:
    """Index `n` small JPEG files, the i-th carrying source i mod len(sources)'s tags and outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    store = tagger.load(cfg).probability_store
    templates = [
        _template(s.record, folder / f"template-{i}.jpg", cfg) for i, s in enumerate(sources)
    ]
    records = []
    for i in range(n):
        source, data = sources[i % len(sources)], templates[i % len(sources)]
        path = folder / f"photo-{i:06d}.jpg"
        path.write_bytes(data)
        st = path.stat()
        records.append(
            replace(
                source.record,
                path=str(path),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                sha256=hashlib.sha256(data).hexdigest(),
                written_to=str(path),
            )
        )
    rows = np.stack([sources[i % len(sources)].probabilities for i in range(n)])
    with open_index(cfg.index_dir) as index:
        first = index.store(store, rows.shape[1]).append(rows)
        for i, record in enumerate(records):
            record.vectors = {store: first + i}
        index.put_many(records)


def _template(record: PhotoRecord, path: Path, cfg: Config) -> bytes:
    """A 64x48 JPEG with the user's keywords and ours as the source photo has them."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    metadata.write(path, record.auto, record.model_version, cfg.write)
    data = path.read_bytes()
    path.unlink()
    return data


def _no_decoding(*args: object, **kwargs: object) -> None:
    raise AssertionError("a threshold-only refine decoded an image")


def bench(n: int, sources: list[Source], work: Path, threshold: float) -> tuple[float, str]:
    cfg_path = work / f"config-{n}.yaml"
    index_dir = work / f"index-{n}"
    cfg_path.write_text(f"index:\n  path: {index_dir}\n")
    cfg = Config()
    cfg.index.path = str(index_dir)
    synthesise(sources, work / f"photos-{n}", n, cfg)
    cfg_path.write_text(f"index:\n  path: {index_dir}\ntagging:\n  threshold: {threshold}\n")
    load, dec = decode.load, decode.decode
    decode.load = decode.decode = _no_decoding  # type: ignore[assignment]
    err = io.StringIO()
    try:
        start = time.perf_counter()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(["--quiet", "--config", str(cfg_path), "refine"])
        seconds = time.perf_counter() - start
    finally:
        decode.load, decode.decode = load, dec  # type: ignore[assignment]
    if status != 0:
        raise RuntimeError(f"refine failed: {err.getvalue()}")
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return seconds, f"{lines[0]} | {lines[-1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--sources", type=Path, default=SHARED / "coco256" / "val")
    parser.add_argument("--threshold", type=float, default=0.1, help="new threshold (was 0.2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phototag-bench-") as tmp:
        work = Path(tmp)
        for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            os.environ[var] = str(work / var.lower())
        catalogue.import_file(SHARED / "models" / "mobilenet_v2_1.0_224_quant.onnx")
        cfg = Config()
        cfg.index.path = str(work / "source-index")
        photos = sorted(args.sources.glob("*.jpg"))
        start = time.perf_counter()
        sources = tag_sources(photos, work / "sources", cfg)
        print(f"tagged {len(sources)} source photos in {time.perf_counter() - start:.1f} s")
        for n in args.photos:
            seconds, summary = bench(n, sources, work, args.threshold)
            print(f"{n} photos: threshold-only refine {seconds:.2f} s ({summary})")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
