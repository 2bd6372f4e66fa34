"""`phototag similar` at library scale: the ANN graph's build, query latency and recall.

Writes a synthetic library with embeddings (tests/synthetic_library.py) through the real
`Index.put_many`, lets `library/neighbours.py` build and save the graph as `similar` does,
then times `similar`'s lookup in process and `phototag similar` as a user runs it, and
measures recall@10 of the graph against exact search (`similarity.nearest`).

Run: USEARCH_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python
bench/similar_benchmark.py --n 1000000 --dir /tmp/ann12-1m (an index already in --dir is reused).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import reference_embeddings
import synthetic_library

from phototag import catalogue
from phototag.library.index import open_index

MODEL = catalogue.find("mobilenet-v2", "tf1-quant")  # the model of the shared test data
STORE = f"embedding-{MODEL.sha256[:12]}"  # where `similar` with that model looks
CHUNK = 100_000


def write(index_dir: Path, n: int) -> float:
    """n synthetic photos with 1280-d embeddings, 10 000 a batch; seconds taken."""
    start = time.perf_counter()
    vectors, _ = synthetic_library.embeddings(n, seed=1)
    with open_index(index_dir) as index:
        for at in range(0, n, CHUNK):
            lib = synthetic_library.library(min(CHUNK, n - at), dim=0, seed=at)
            records = synthetic_library.photo_records(lib)
            for r in records:
                r.path = r.path.replace("IMG_", f"IMG_{at // CHUNK}_")
            for part in range(0, len(records), 10_000):
                rows = vectors[at + part : at + part + 10_000]
                index.put_many(records[part : part + 10_000], [{STORE: v} for v in rows])
            print(f"written {at + len(records):,}", file=sys.stderr, flush=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--write-only", action="store_true")
    args = parser.parse_args()
    index_dir = args.dir / "index"
    if not (index_dir / "index.sqlite").exists():
        print(f"wrote {args.n:,} photos in {write(index_dir, args.n):.0f} s", flush=True)
    if args.write_only:
        return
    assert reference_embeddings.MODEL.exists()


if __name__ == "__main__":
    main()
