"""`train` and `eval`: learn the user's keywords; benchmark the method."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from phototag.cli.common import (
    Subparsers,
    UserError,
    command,
    emit,
    load_tagger,
    open_index,
)
from phototag.config import Config
from phototag.learn import train


def stages(args: argparse.Namespace) -> Callable[[str], None]:
    """A line on stderr per stage, after the seconds since the start (none with -q): both
    commands run for minutes and must not look hung."""
    start = time.monotonic()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"{time.monotonic() - start:6.1f} s  {message}", file=sys.stderr, flush=True)

    return progress


def cmd_train(args: argparse.Namespace, cfg: Config) -> int:
    tagger = load_tagger(cfg)
    # Read-only: training only reads the index, so it may run beside the service.
    with open_index(cfg, dry_run=True) as index:
        trained = train.train(index, tagger.stores, cfg.tagprop, stages(args))
    data = trained.data
    if args.json:
        emit(_trained_json(trained), as_json=True)
    else:
        print(train.format_report(trained.report))
    if data.too_rare:
        rare = ", ".join(f"{tag} ({n})" for tag, n in list(data.too_rare.items())[:10])
        more = f" and {len(data.too_rare) - 10} more" if len(data.too_rare) > 10 else ""
        print(
            f"not learned yet, on fewer than {cfg.tagprop.min_examples} photos: {rare}{more}",
            file=sys.stderr,
        )
    print(
        f"learned {len(data.tags)} keywords from {data.keyworded} photos in "
        f"{trained.seconds:.1f} s (leave-one-out at probability >= {cfg.tagprop.threshold:g}: "
        f"precision {trained.report.precision:.2f}, recall {trained.report.recall:.2f}); "
        f"active model {trained.digest}. Run `phototag refine` to re-score photos tagged "
        "before (no decoding); a running service uses it once reloaded.",
        file=sys.stderr,
    )
    return 0


def _number(x: float) -> float | None:
    """JSON has no NaN: a precision with no proposal to measure is null."""
    return None if math.isnan(x) else round(x, 4)


def _trained_json(trained: train.Trained) -> dict[str, object]:
    """`train --json`: one document, the table's rows and what was learned."""
    r = trained.report
    return {
        "keywords": [
            {"keyword": q.tag, "photos": q.photos}
            | {"precision": _number(q.precision), "recall": _number(q.recall), "ap": _number(q.ap)}
            for q in r.tags
        ],
        "mean": {"precision": _number(r.precision), "recall": _number(r.recall)}
        | {"ap": _number(r.mean_ap)},
        "threshold": r.threshold,
        "learned": len(trained.data.tags),
        "photos": trained.data.keyworded,
        "not_learned": trained.data.too_rare,
        "model": trained.digest,
        "seconds": round(trained.seconds, 2),
    }


def cmd_eval(args: argparse.Namespace, cfg: Config) -> int:
    from phototag.learn import arff, evaluate

    try:
        results = evaluate.evaluate_dataset(args.dataset, progress=stages(args))
    except arff.ArffError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    print(evaluate.format_table(results))
    return 0


def register(sub: Subparsers) -> None:
    command(
        sub,
        "train",
        cmd_train,
        "learn your own keywords from the photos you keyworded",
        description="Learn the keywords you gave photos yourself (never phototag's), with TagProp "
        "on the photos' stored CNN embeddings, colours and class scores, so tag, scan, watch and "
        "refine propose them for similar photos. A keyword is learned once tagprop.min_examples "
        "photos carry it; keywords of ours you deleted count against. Prints each keyword's "
        "leave-one-out precision, recall and average precision.",
    )
    p = command(
        sub,
        "eval",
        cmd_eval,
        "compare TagProp with baselines on an image-annotation benchmark",
        description="Run TagProp, 2PKNN and a k-NN vote on a benchmark folder (Mulan ARFF train and "
        "test files plus the label XML, e.g. corel5k) and print P, R, F1, N+ and mAP at 5 tags "
        "per image, hyper-parameters chosen on a validation split of the training set.",
    )
    p.add_argument("dataset", type=Path, metavar="DATASET")
