"""The deployment segment of a design: the rollout strategy, the server's limits and its security.

A strategy names the registry aliases it routes between (docs/rollout.md):

- ``single``: the champion answers every request;
- ``shadow``: the champion answers; ``shadow_percent`` of requests are also scored by the
  ``challenger`` off the request path and logged beside it;
- ``canary``: ``steps`` percent of requests go to the ``challenger``, advanced after
  ``step_min_requests`` and rolled back on an SLO breach or a degraded metric;
- ``ab``: ``traffic`` weights by alias, a deterministic hash of (``seed``, unit) per request,
  the unit being the field ``sticky_by`` (or the ``X-Mlsd-Unit`` header);
- ``bandit``: ``epsilon_greedy``, ``ucb`` or ``thompson`` over ``arms``, rewarded from feedback
  by ``reward``.

>>> spec = DeploymentSpec(strategy="ab", traffic={"champion": 50, "challenger": 50}, sticky_by="tailnum")
>>> spec.routed_aliases()
['champion', 'challenger']
>>> DeploymentSpec(strategy="canary", steps=[5, 25, 100]).routed_aliases()
['champion', 'challenger']
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from mlsd._spec import StrictSpec as _Spec

__all__ = [
    "ALIAS_PATTERN",
    "DeploymentSpec",
    "ExperimentSpec",
    "Strategy",
    "is_loopback_host",
    "list_strategies",
]

#: rollout strategies the schema names; the planned ones are refused by ``mlsd validate`` until built
Strategy = Literal["single", "shadow", "canary", "ab", "interleaving", "bandit"]


def list_strategies() -> list[str]:
    """The rollout strategies that are built (interleaving, for rankers, is planned).

    >>> list_strategies()
    ['single', 'shadow', 'canary', 'ab', 'bandit']
    """
    return ["single", "shadow", "canary", "ab", "bandit"]


#: a registry alias (MLflow's alias rules); "latest" and "v<digits>" are reserved by MLflow
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


def _not_reserved(alias: str) -> str:
    if alias == "latest" or re.fullmatch(r"v[0-9]+", alias):
        raise ValueError(f"{alias!r} is reserved by MLflow's registry; choose another alias, e.g. challenger")
    return alias


_Alias = Annotated[str, Field(pattern=ALIAS_PATTERN), AfterValidator(_not_reserved)]


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HOST_NAME = r"^(\*\.)?[A-Za-z0-9._:-]+$"
_ORIGIN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?$"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback_host(host: str) -> bool:
    """True when ``host`` (a bind address) only accepts connections from this machine.

    >>> [is_loopback_host(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.1.2.3", "example")]
    [True, True, True, False, False, False]
    """
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # another host name: it may resolve anywhere
        return False


class ExperimentSpec(_Spec):
    """How ``mlsd experiment`` analyses the variants of the log (docs/experiments.md)."""

    baseline: _Alias = Field("champion", description="the variant every other is compared with")
    alpha: float = Field(0.05, gt=0, le=0.2, description="the false-positive rate of each verdict")
    metrics: list[str] | None = Field(
        None,
        description="what is compared (mlsd.experiments.analysis.METRICS); default: by task, e.g. "
        "accuracy, cost (with goals.costs) and latency_ms for a binary task",
    )
    correction: Literal["holm", "fdr_bh", "none"] = Field(
        "holm", description="multiple-testing correction across the metrics"
    )
    cuped_covariate: str | None = Field(
        None,
        description="a numeric feature logged with each request, used by CUPED to reduce the variance "
        "of mean metrics (it must not depend on the variant)",
    )
    sequential: Literal["msprt", "obrien_fleming", "none"] = Field(
        "msprt",
        description="msprt: always-valid p-values, the log may be checked after every batch; "
        "obrien_fleming: group-sequential boundaries up to a planned horizon",
    )
    tau: float = Field(
        0.1, gt=0, le=10, description="mSPRT mixing scale, in standard deviations of the metric"
    )
    horizon: int | None = Field(
        None,
        ge=2,
        description="obrien_fleming: the planned units (requests without sticky units) of the baseline "
        "arm, e.g. from mlsd experiment --plan",
    )
    checkpoints: int = Field(
        20, ge=2, le=1000, description="the batches (equal numbers of requests) the sequential test looks at"
    )
    power: float = Field(0.8, gt=0.5, lt=1, description="the power `mlsd experiment --plan` plans for")


class DeploymentSpec(_Spec):
    strategy: Strategy = "single"
    # -- rollout (docs/rollout.md) --
    challenger: _Alias = Field(
        "challenger", description="the alias shadow and canary route to (mlsd build --alias challenger)"
    )
    shadow_percent: float = Field(
        100, gt=0, le=100, description="shadow: share of requests also scored by the challenger"
    )
    steps: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=list, description="canary: percent of requests to the challenger, step by step"
    )
    step_min_requests: int = Field(
        500, ge=1, description="canary: challenger requests in a step before it may advance"
    )
    step_min_labelled: int = Field(
        0,
        ge=0,
        description="canary: challenger rows with feedback a step needs before it may advance or "
        "complete (0: a step advances on volume, errors and latency when no labels have arrived)",
    )
    max_degradation: float = Field(
        0.02,
        ge=0,
        le=1,
        description="canary: how much lower the challenger's decision accuracy may be than the "
        "champion's (at the confidence below) before the step holds or rolls back",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="canary: confidence of that comparison")
    max_error_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="canary: share of the challenger's requests that fail (answered by a fallback) "
        "above which it is rolled back",
    )
    traffic: dict[_Alias, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="ab: weight of each alias (normalised; any positive numbers)"
    )
    sticky_by: str | None = Field(
        None,
        description="ab, canary, bandit: the request field whose value is the unit of assignment "
        "(else the X-Mlsd-Unit header; else random, marked so)",
    )
    seed: int = Field(0, description="the experiment seed of sticky assignment: a new seed reshuffles units")
    bandit: Literal["epsilon_greedy", "ucb", "thompson"] | None = None
    arms: list[_Alias] = Field(
        default_factory=list,
        description="bandit: the aliases it chooses between; default: champion and challenger",
    )
    epsilon: float = Field(0.1, ge=0, le=1, description="epsilon_greedy: share of requests explored")
    reward: Literal["match", "cost"] = Field(
        "match",
        description="bandit: 1 when the decision matched the outcome (match), or minus the cost of "
        "the error from goals.costs (cost)",
    )
    experiment: ExperimentSpec = Field(
        default_factory=ExperimentSpec, description="the analysis of the variants (mlsd experiment)"
    )
    variant_timeout_ms: float | None = Field(
        None, gt=0, le=60_000, description="a variant slower than this on a batch is answered by the fallback"
    )
    breaker_failures: int = Field(
        5, ge=1, le=10_000, description="consecutive failures that open a variant's circuit"
    )
    breaker_cooldown_s: float = Field(30, gt=0, le=86_400, description="how long an open circuit stays open")
    state_refresh_s: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="how often a server re-reads the shared rollout state and the registry's aliases",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    log_url: str | None = Field(
        None, description="SQLAlchemy URL of the prediction log; defaults to SQLite in the workspace"
    )
    max_batch_size: int = Field(64, ge=1, le=100_000, description="rows scored together (micro-batching)")
    max_batch_delay_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="longest wait to fill a batch (0: score only what queued while the last batch ran)",
    )
    max_body_bytes: int | None = Field(
        None,
        ge=1024,
        description="larger request bodies get 413; default: enough for max_rows_per_request rows as "
        "large as the largest build row, at least 1 MB",
    )
    max_rows_per_request: int = Field(10_000, ge=1, description="rows of one request (422 past it)")
    reject_unseen_categories: bool = Field(
        False, description="422 for a category never seen at build time (else scored as 'infrequent')"
    )
    range_tolerance: float = Field(
        0.5, ge=0, description="numbers may exceed the build range by this fraction of it before a 422"
    )
    max_string_length: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="longest string a request field may hold (422 past it); default: 4x the longest "
        "value seen at build time, at least 256, at most 10,000",
    )
    range_tolerances: dict[str, Annotated[float, Field(ge=0)] | Literal["growing", "none"]] = Field(
        default_factory=dict,
        description="per raw input column: its own tolerance, growing (no upper bound) or none (no range "
        "check); recorded in the model's schema at build time",
    )
    # -- security of `mlsd serve` (docs/serving-security.md) --
    feedback_auth: Literal["token", "signed_id", "none"] | None = Field(
        None,
        description="how /v1/feedback is authenticated: a bearer token, an HMAC of the request id echoed "
        "from the prediction, or none (loopback hosts only); default: none on a loopback host, else token",
    )
    feedback_token_env: str = Field(
        "MLSD_FEEDBACK_TOKEN",
        pattern=_ENV_NAME,
        description="environment variable holding the bearer token of /v1/feedback (feedback_auth: token)",
    )
    feedback_secret_env: str = Field(
        "MLSD_FEEDBACK_SECRET",
        pattern=_ENV_NAME,
        description="environment variable holding the key that signs request ids (feedback_auth: signed_id)",
    )
    admin_token_env: str = Field(
        "MLSD_ADMIN_TOKEN",
        pattern=_ENV_NAME,
        description="environment variable of the bearer token of the admin API (/v1/admin/*) and of "
        "/v1/model's schema and threshold",
    )
    allowed_hosts: list[Annotated[str, Field(min_length=1, pattern=_HOST_NAME)]] = Field(
        default_factory=list,
        description="Host header names accepted (any port; '*.example.com' for subdomains); "
        "default: the bound address, localhost, 127.0.0.1 and ::1",
    )
    cors_origins: list[Annotated[str, Field(pattern=_ORIGIN)]] = Field(
        default_factory=list,
        description="origins (scheme://host[:port]) a browser may call the API from; none: no CORS headers",
    )
    max_header_bytes: int = Field(
        16_384,
        ge=1024,
        le=1_048_576,
        description="request line + headers larger than this: 431, connection closed",
    )
    max_header_count: int = Field(100, ge=8, le=10_000, description="more request headers than this get 431")
    max_request_line_bytes: int = Field(
        8192, ge=256, le=1_048_576, description="a longer method + target + version gets 414"
    )
    max_concurrent_connections: int = Field(
        1000, ge=1, le=1_000_000, description="open connections at most; more are answered 503 and closed"
    )
    read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="headers, then the body, must arrive within this; else the connection is closed",
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, le=3600, description="idle keep-alive connections closed after this"
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"canary steps must increase, e.g. [5, 25, 50, 100]; received {v}")
        return v

    def routed_aliases(self) -> list[str]:
        """The registry aliases this strategy serves, the champion first."""
        if self.strategy in ("shadow", "canary"):
            named = [self.challenger]
        elif self.strategy == "ab":
            named = list(self.traffic)
        elif self.strategy == "bandit":
            named = list(self.arms) or [self.challenger]
        else:
            named = []
        return list(dict.fromkeys(["champion", *named]))
