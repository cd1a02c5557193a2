"""How hybrid search merges the dense and the keyword list, and where a model's fusion settings come from.

Three methods, each over the two candidate lists (`candidates` deep, or k when larger):

- `rrf`: weighted reciprocal rank fusion, score = sum_m w_m / (rrf_k + rank_m). Ranks only: robust when
  the two scores are not comparable, but a weak list moves documents as much as a strong one.
- `minmax`: convex combination of scores scaled to [0, 1] within each list (per query);
  score = w_d * dense' + w_k * keyword'. A passage missing from a list gets that list's minimum (0).
- `zscore`: the same with each list standardised (mean 0, standard deviation 1); a missing passage gets
  that list's lowest value.

How much the dense list should count depends on the encoder: a weak one should barely move BM25's order,
a strong one should lead. So the weights are measured per model (`python -m index.calibrate`, which
writes a `search` block with the model: into `encoder/default/default.json` for the shipped default, into
`config.json` (`nvembed_search.search`) for a model directory) and read here at search time. The block
names the fingerprint it was measured with; a model without a matching block gets `SAFE_DEFAULT`.
Settings given explicitly to a search (CLI flags, `SearchConfig` fields) override the model's.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from .errors import InvalidInputError

log = logging.getLogger(__name__)

Method = Literal["rrf", "minmax", "zscore"]
METHODS = ("rrf", "minmax", "zscore")


@dataclass(frozen=True)
class FusionConfig:
    """One fusion setting (see the module docstring)."""

    method: Method = "rrf"
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    rrf_k: int = 60  # rrf only: the rank constant
    candidates: int = 100  # passages taken from each list (at least k)

    def validate(self) -> FusionConfig:
        if self.method not in METHODS:
            raise InvalidInputError(f"fusion method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("dense_weight", "keyword_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"fusion {name} must be a finite number >= 0, got {value!r}")
        if self.dense_weight + self.keyword_weight <= 0:
            raise InvalidInputError("fusion weights are both 0: at least one list must count")
        if int(self.rrf_k) < 1:
            raise InvalidInputError(f"fusion rrf_k must be at least 1, got {self.rrf_k!r}")
        if int(self.candidates) < 1:
            raise InvalidInputError(f"fusion candidates must be at least 1, got {self.candidates!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "fusion settings") -> FusionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"{source}: unknown fusion field(s) {', '.join(unknown)}")
        try:
            return cls(**data).validate()
        except (TypeError, InvalidInputError) as exc:
            raise InvalidInputError(f"{source}: {exc}") from None

    def describe(self) -> str:
        if self.method == "rrf":
            return (f"RRF k={self.rrf_k}, weights dense {self.dense_weight:g} / keyword {self.keyword_weight:g}, "
                    f"{self.candidates} candidates")
        return (f"{self.method} fusion, weights dense {self.dense_weight:g} / keyword {self.keyword_weight:g}, "
                f"{self.candidates} candidates")


#: For a model nobody calibrated: classic equal-weight RRF (k = 60), the usual choice in the literature.
SAFE_DEFAULT = FusionConfig()

Ranked = Sequence[tuple[int, float]]


def _normalised(ranked: Ranked, method: Method) -> tuple[dict[int, float], float]:
    """(id -> normalised score, the value a missing id gets)."""
    if not ranked:
        return {}, 0.0
    scores = [s for _, s in ranked]
    if method == "minmax":
        lo, hi = min(scores), max(scores)
        span = hi - lo
        return {i: (s - lo) / span if span > 0 else 1.0 for i, s in ranked}, 0.0
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    z = {i: (s - mean) / std if std > 0 else 0.0 for i, s in ranked}
    return z, min(z.values())


def fuse(dense: Ranked, keyword: Ranked, config: FusionConfig) -> list[tuple[int, float]]:
    """Ids of both lists (each best first) by fused score, best first; ties broken by id."""
    if config.method == "rrf":
        scores: dict[int, float] = {}
        for ranking, weight in ((dense, config.dense_weight), (keyword, config.keyword_weight)):
            for rank, (item, _) in enumerate(ranking, 1):
                scores[item] = scores.get(item, 0.0) + weight / (config.rrf_k + rank)
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    nd, missing_d = _normalised(dense, config.method)
    nk, missing_k = _normalised(keyword, config.method)
    if not nd:  # one list empty (no query word in the corpus): the other alone
        missing_d = 0.0
    if not nk:
        missing_k = 0.0
    ids = dict.fromkeys([i for i, _ in dense] + [i for i, _ in keyword])
    fused = {i: config.dense_weight * nd.get(i, missing_d) + config.keyword_weight * nk.get(i, missing_k)
             for i in ids}
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


# --------------------------------------------------------------------------- the model's settings ----

def search_block(encoder: Any) -> dict[str, Any] | None:
    """The `search` block stored with `encoder` whose fingerprint matches it, else None.

    Looked up in the model's own config (`config.extra["search"]`, i.e. `nvembed_search.search` in its
    config.json), then in the shipped default's manifest (`encoder/default/default.json`). A block measured
    with other weights is never used; when it was stored for this very model (its own config.json, or the
    manifest of the default version it was built as, e.g. parts re-exported without recalibrating) a
    warning names it and the recalibration command, and the search gets `SAFE_DEFAULT`.
    """
    fingerprint = getattr(encoder, "fingerprint", None)
    candidates: list[tuple[str, Any, bool]] = []  # (source, block, stored for this model)
    extra = getattr(getattr(encoder, "config", None), "extra", None)
    extra = extra if isinstance(extra, dict) else {}
    if extra.get("search") is not None:
        candidates.append(("the model's config.json", extra.get("search"), True))
    manifest = shipped_manifest_path()
    if manifest is not None and manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            own = data.get("version") is not None and extra.get("version") == data.get("version")
            candidates.append((str(manifest), data.get("search"), own))
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s: %s", manifest, exc)
    for source, block, _ in candidates:
        if isinstance(block, dict) and block.get("fingerprint") == fingerprint:
            return {**block, "_source": source}
    for source, block, own in candidates:
        if own and isinstance(block, dict):
            log.warning("the search block in %s was measured for fingerprint %s, but this model's is %s: hybrid "
                        "search uses the safe default (%s) until it is recalibrated: python -m index.calibrate "
                        "--model %s --beir DEV [DEV ...]", source, block.get("fingerprint"), fingerprint,
                        SAFE_DEFAULT.describe(), "MODEL_DIR" if source == "the model's config.json" else "default")
    return None


def shipped_manifest_path() -> Path | None:
    try:
        from encoder.default import SHIPPED_DIR
    except ImportError:  # the index without the encoder package (keyword search only)
        return None
    return SHIPPED_DIR / "default.json"


_MODEL_CACHE: dict[tuple[int, str], FusionConfig] = {}


def model_fusion(encoder: Any) -> FusionConfig:
    """The fusion settings measured for `encoder` (its `search` block), or `SAFE_DEFAULT`."""
    if encoder is None:
        return SAFE_DEFAULT
    key = (id(encoder), str(getattr(encoder, "fingerprint", "")))
    cached = _MODEL_CACHE.get(key)
    if cached is not None:
        return cached
    block = search_block(encoder)
    config = SAFE_DEFAULT
    if block is not None and isinstance(block.get("fusion"), dict):
        config = FusionConfig.from_dict(block["fusion"], f"search block of {block['_source']}")  # raises, naming it
    _MODEL_CACHE[key] = config
    return config
