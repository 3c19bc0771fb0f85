"""The evaluation protocols and the ``[probe]`` table of a frozen-feature submission.

The protocol tokens (``finetune``, ``linear``, ``knn-<k>``, ``fewshot-<n>``) are carried by run.json, the
leaderboard entries and the board; they are defined here once, from the constants below. This is a leaf
(pydantic only): records, submissions and the leaderboard import it; torch stays out.

A frozen-feature submission (``protocol = "linear" | "knn" | "fewshot" | "probe"``) names an encoder; the
probes fit on the encoder's frozen features. ``protocol = "probe"`` runs every protocol listed in
``[probe] protocols`` (default all three); ``linear``/``knn``/``fewshot`` run that one protocol. Example::

    protocol = "probe"
    encoder = "timm:hf-hub:1aurent/vit_small_patch14_224.dinobloom"
    [probe]
    protocols = ["linear", "knn", "fewshot"]
    [probe.linear]
    c = "dinobloom"           # C = D x K / 100 (DinoBloom), or "val-search", or a number
    [probe.knn]
    k = [1, 20]               # DinoBloom's two entries
    metric = "euclidean"      # or "cosine"
    [probe.fewshot]
    shots = [1, 2, 4, 8, 16]
    episodes = 100
    seed = 0

Each protocol yields one or more *variants*, the tokens a run folder, run.json and the leaderboard carry:
``linear``, ``knn-<k>``, ``fewshot-<n>``. docs/protocols.md gives every constant's source. This module is
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import re

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from bmbench.errors import BmbenchError, validation_messages

PROBE_PROTOCOLS: tuple[str, ...] = ("linear", "knn", "fewshot")
"""The frozen-feature protocols, in the order a probe run executes them."""
KNN_K: tuple[int, ...] = (1, 20)
"""The k values of DinoBloom's kNN evaluation (``general_fixed_split_patch_eval.py``), the board's tokens."""
FEWSHOT_SHOTS: tuple[int, ...] = (1, 2, 4, 8, 16)
"""Shots per class of the few-shot protocol (SimpleShot's 1- and 5-shot grown to the usual doubling series)."""
DEFAULT_C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
"""``c = "val-search"``: the log grid of C (one value per decade) scored on the val part."""

ProtocolName = Literal["linear", "knn", "fewshot"]

FINETUNE = "finetune"
"""The protocol of a model trained end to end (the paper's; every submission without an encoder)."""
PROTOCOL_RE = re.compile("^(" + "|".join([FINETUNE, "linear", *(f"knn-{k}" for k in KNN_K),
                                          *(f"fewshot-{n}" for n in FEWSHOT_SHOTS)]) + ")$")
"""A result's protocol token: ``finetune`` or a frozen-feature variant (linear, k-NN, few-shot)."""


def _check_token(value: str) -> str:
    if not PROTOCOL_RE.fullmatch(value):
        raise ValueError("expected finetune, linear, " + ", ".join(f"knn-{k}" for k in KNN_K)
                         + " or fewshot-<n> (n in " + ", ".join(map(str, FEWSHOT_SHOTS)) + ")")
    return value


ProtocolToken = Annotated[str, AfterValidator(_check_token)]
"""A pydantic field type for a protocol token (run.json, leaderboard entries)."""

PROTOCOL_LABELS = {FINETUNE: "fine-tune", "linear": "linear", **{f"knn-{k}": f"kNN-{k}" for k in KNN_K},
                   **{f"fewshot-{n}": f"few-shot-{n}" for n in FEWSHOT_SHOTS}}
"""How the board and the CLI name each protocol token."""


def protocol_text(protocol: str) -> str:
    """``fine-tune``, ``linear``, ``kNN-1``, ``kNN-20`` or ``few-shot-n`` (an unknown token as it is)."""
    return PROTOCOL_LABELS.get(protocol, protocol)


class LinearConfig(BaseModel):
    """Multinomial logistic regression on the features (L2, L-BFGS), fit on train + val of each fold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    c: float | Literal["dinobloom", "val-search"] = Field(
        "dinobloom", description="'dinobloom' (C = D x K / 100), 'val-search' (best C of c_grid on val), or C > 0.")
    c_grid: tuple[float, ...] = Field(DEFAULT_C_GRID, min_length=2, description="C values tried by 'val-search'.")
    max_iter: int = Field(1000, ge=1, le=100_000, description="L-BFGS iterations (DinoBloom: 1000).")
    tol: float = Field(1e-5, gt=0, le=1.0, description="Stop when max |gradient| of the mean objective <= tol "
                       "(10x tighter than scikit-learn's 1e-4, so the probe reaches at least its objective).")
    history: int = Field(10, ge=1, le=100, description="L-BFGS memory (scipy's default m = 10, as scikit-learn).")

    @field_validator("c")
    @classmethod
    def _positive_c(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not value > 0:
            raise ValueError("C must be > 0 (or 'dinobloom' / 'val-search')")
        return value

    @field_validator("c_grid")
    @classmethod
    def _grid(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not v > 0 for v in value) or list(value) != sorted(set(value)):
            raise ValueError("c_grid must hold distinct C values > 0 in increasing order")
        return value


def _benchmark_values(value: tuple[int, ...], allowed: tuple[int, ...], name: str, allowed_text: str,
                      each: str) -> tuple[int, ...]:
    """The sorted values of a variant list (k or shots): each one of ``allowed``, none repeated."""
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {name} {', '.join(map(str, unknown))}; {allowed_text} "
                         f"{', '.join(map(str, allowed))}")
    if len(set(value)) != len(value):
        raise ValueError(f"{each} may appear once")
    return tuple(sorted(value))


class KnnConfig(BaseModel):
    """k-nearest neighbours on the features: uniform votes of the k closest train + val images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: tuple[int, ...] = Field(KNN_K, min_length=1, description="Neighbour counts, each one a variant knn-<k>.")
    metric: Literal["euclidean", "cosine"] = Field("euclidean", description="Distance (DinoBloom: euclidean).")

    @field_validator("k")
    @classmethod
    def _known_k(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return _benchmark_values(value, KNN_K, "k", "the benchmark's kNN variants are k in", "each k")


class FewShotConfig(BaseModel):
    """SimpleShot prototypes from n labelled images per class, averaged over seeded episodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shots: tuple[int, ...] = Field(FEWSHOT_SHOTS, min_length=1, description="Images per class, each a variant.")
    episodes: int = Field(100, ge=1, le=10_000, description="Seeded support draws per shot count.")
    seed: int = Field(0, ge=0, description="Seed of the support draws (with fold, shots and episode).")

    @field_validator("shots")
    @classmethod
    def _known_shots(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return _benchmark_values(value, FEWSHOT_SHOTS, "shots", "the benchmark's few-shot variants are n in",
                                 "each shot count")


class ProbeConfig(BaseModel):
    """The ``[probe]`` table: which protocols a ``protocol = "probe"`` submission runs, and their settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocols: tuple[ProtocolName, ...] = Field(PROBE_PROTOCOLS, min_length=1,
                                                description="Protocols run by protocol = 'probe'.")
    linear: LinearConfig = Field(default_factory=LinearConfig)
    knn: KnnConfig = Field(default_factory=KnnConfig)
    fewshot: FewShotConfig = Field(default_factory=FewShotConfig)

    @field_validator("protocols")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each protocol may appear once")
        return tuple(p for p in PROBE_PROTOCOLS if p in value)

    def protocols_for(self, protocol: str) -> tuple[str, ...]:
        """The protocols a submission with ``protocol`` runs (``probe``: the listed ones)."""
        if protocol == "probe":
            return self.protocols
        if protocol not in PROBE_PROTOCOLS:
            raise BmbenchError(f"protocol {protocol!r} is not a frozen-feature protocol; expected one of "
                               f"{', '.join(PROBE_PROTOCOLS)} or 'probe'", exit_code=2)
        return (protocol,)

    def variants(self, protocol: str) -> list[str]:
        """Variant tokens, in run order: ``linear``, ``knn-<k>`` ..., ``fewshot-<n>`` ..."""
        out: list[str] = []
        for name in self.protocols_for(protocol):
            if name == "linear":
                out.append("linear")
            elif name == "knn":
                out.extend(f"knn-{k}" for k in self.knn.k)
            else:
                out.extend(f"fewshot-{n}" for n in self.fewshot.shots)
        return out


def parse_variant(token: str) -> tuple[str, int | None]:
    """``knn-20`` -> ("knn", 20), ``linear`` -> ("linear", None); an unknown token is an exit-2 error."""
    if token == "linear":
        return "linear", None
    name, _, number = token.partition("-")
    allowed = {"knn": KNN_K, "fewshot": FEWSHOT_SHOTS}.get(name)
    if allowed is None or not number.isdigit() or int(number) not in allowed:
        raise BmbenchError(f"unknown probe variant {token!r}; expected linear, "
                           + ", ".join(f"knn-{k}" for k in KNN_K) + " or "
                           + ", ".join(f"fewshot-{n}" for n in FEWSHOT_SHOTS), exit_code=2)
    return name, int(number)


def probe_config(raw: dict[str, Any] | None, where: str = "[probe]") -> ProbeConfig:
    """Validate a ``[probe]`` table given as a dict; errors name ``where`` and every bad key."""
    try:
        return ProbeConfig.model_validate(raw or {})
    except ValidationError as err:
        lines = [f"  probe.{key}: {message}" for key, message in validation_messages(err, "docs/protocols.md")]
        raise BmbenchError(f"{where}: invalid probe settings:\n" + "\n".join(lines), exit_code=2) from None
