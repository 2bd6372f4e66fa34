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
