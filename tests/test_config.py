from pathlib import Path

import pytest

from phototag import config
from tests.conftest import ROOT


def test_shipped_config_yaml_documents_exactly_the_defaults() -> None:
    loaded = config.load(ROOT / "config.yaml")
    loaded.source = None
    assert loaded == config.Config()


def test_missing_user_config_gives_defaults() -> None:
    assert config.load() == config.Config()


def test_partial_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tagging:\n  threshold: 0.5\nwrite:\n  mode: sidecar\n")
    cfg = config.load(path)
    assert cfg.tagging.threshold == 0.5
    assert cfg.tagging.max_tags == config.TaggingConfig().max_tags
    assert cfg.write.mode == "sidecar"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("taging:\n  threshold: 0.5\n", "unknown setting taging"),
        ("tagging:\n  treshold: 0.5\n", "unknown setting tagging.treshold"),
        ("write:\n  mode: sometimes\n", "write.mode must be one of auto, inplace, sidecar"),
        ("tagging:\n  max_tags: many\n", "tagging.max_tags must be int"),
        ("watch:\n  folders: /photos\n", "watch.folders must be a list"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("model: [\n", "cannot read config"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message.replace(".", r"\.")):
        config.load(path)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tagging:\n  threshold: -0.5\n", "tagging.threshold must be between 0 and 1"),
        ("tagging:\n  threshold: 7\n", "tagging.threshold must be between 0 and 1"),
        ("tagging:\n  threshold: .nan\n", "tagging.threshold must be a number"),
        ("tagging:\n  max_tags: -3\n", "tagging.max_tags must be between 0"),
        ("scan:\n  workers: -3\n", "scan.workers must be between 0"),
        ("scan:\n  max_file_bytes: 0\n", "scan.max_file_bytes must be at least 1"),
        ("model:\n  batch_size: -1\n", "model.batch_size must be between 1"),
        ("model:\n  batch_size: 0\n", "model.batch_size must be between 1"),
        ("model:\n  batch_size: 100000000\n", "model.batch_size must be between 1 and 1024"),
        ("fetch:\n  max_bytes: -1\n", "fetch.max_bytes must be at least 1"),
        ("fetch:\n  timeout_s: -5\n", "fetch.timeout_s must be between"),
        ("tagprop:\n  k: -1\n", "tagprop.k must be between 1"),
        ("scan:\n  extensions: [jpg]\n", "scan.extensions: 'jpg' must start with a dot"),
        ("tagging:\n  threshold: 0.3\n  threshold: 0.4\n", "setting threshold given twice"),
        ("tagging:\n  max_tags: 2\ntagging:\n  ancestors: false\n", "setting tagging given twice"),
        ("tagging:\n  ancestors: false\n", "setting tagging.ancestors is now write.flat_ancestors"),
    ],
)
def test_out_of_range_or_malformed_values_name_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """Issue 17 item 5: each of these used to be a traceback later, or silently accepted."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message.replace(".", r"\.")) as caught:
        config.load(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_non_utf8_config_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"tagging:\n  threshold: 0.5  # caf\xe9\n")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load(path)


def test_flat_ancestors_is_a_write_setting(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("write:\n  flat_ancestors: false\n")
    assert config.load(path).write.flat_ancestors is False
    assert config.Config().write.flat_ancestors is True  # as Lightroom exports
