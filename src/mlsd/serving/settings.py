"""What one server needs: the loaded model, its registry name and version, the log, and limits.

>>> import pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> from mlsd.store import PackagedModel
>>> X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
>>> model = PackagedModel(pipeline=LogisticRegression().fit(X, [0, 0, 1, 1]), task="binary")
>>> ServeSettings(model=model, model_name="demo", model_version=1, log=None, max_batch_size=0)
Traceback (most recent call last):
...
mlsd.errors.ServingError: max_batch_size: must be at least 1 (received 0; expected an integer >= 1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlsd.design import is_loopback_host
from mlsd.errors import ServingError

if TYPE_CHECKING:
    from mlsd.store.packaged import PackagedModel

__all__ = [
    "BASELINE_VERSION",
    "FEEDBACK_AUTH",
    "MIN_SECRET_CHARS",
    "ServeSettings",
    "default_allowed_hosts",
    "rule_baseline",
    "settings_for",
]

FEEDBACK_AUTH = ("token", "signed_id", "none")
MIN_SECRET_CHARS = 16
_SECRET_HINT = (
    f"a random value of at least {MIN_SECRET_CHARS} characters, "
    "e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
)


def default_allowed_hosts(host: str) -> tuple[str, ...]:
    """The Host names a server bound to ``host`` accepts by default (any port).

    >>> default_allowed_hosts("0.0.0.0")
    ('0.0.0.0', 'localhost', '127.0.0.1', '::1')
    """
    return tuple(dict.fromkeys([host.strip("[]").lower(), "localhost", "127.0.0.1", "::1"]))


@dataclass
class ServeSettings:
    """Settings of :func:`mlsd.serving.create_app`.

    ``log`` is a :class:`mlsd.store.prediction_log.PredictionLog` (not started: the app starts it
    and closes it, draining it, with its lifespan). ``time_column`` is the design's ``data.time``:
    its value in a row becomes the record's ``event_time``. ``range_tolerance`` widens the build
    range of numbers by that fraction of its width on each side; dates are never range-checked.
    """

    model: PackagedModel
    model_name: str
    model_version: int
    log: Any
    time_column: str | None = None
    variant: str = "champion"
    max_batch_size: int = 64
    max_batch_delay_ms: float = 2.0
    max_body_bytes: int = 0  # 0: derived from the row limit and the schema (validation.body_limit_for)
    max_rows_per_request: int = 10_000
    reject_unseen_categories: bool = False
    range_tolerance: float = 0.5
    max_errors: int = 100
    max_string_length: int | None = None  # None: from the build schema (validation.string_limit)
    # -- security (docs/serving-security.md); the secrets never appear in repr() --
    host: str = "127.0.0.1"  # the bound address: feedback_auth "none" needs a loopback one
    feedback_auth: str = "none"
    feedback_token: str | None = field(default=None, repr=False)
    feedback_secret: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    admin_token_env: str = "MLSD_ADMIN_TOKEN"  # named in the 403 of a disabled admin API
    allowed_hosts: tuple[str, ...] | None = None  # None: no Host check (settings_for always sets it)
    cors_origins: tuple[str, ...] = ()
    max_header_count: int = 100
    max_request_line_bytes: int = 8192
    # connection limits, applied by mlsd.serving.server (the app alone cannot see them)
    max_header_bytes: int = 16_384
    max_concurrent_connections: int = 1000
    read_timeout_s: float = 10.0
    keep_alive_timeout_s: int = 5
    # the rollout (serving.routing.Routing); None: the champion answers every request
    routing: Any = field(default=None, repr=False)
    # data.privacy (mlsd.data.privacy.RowPrivacy, holding the key): requests treated before scoring
    privacy: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_body_limit()
        self._check_security()
        if not self.model_name:
            raise ServingError(
                "the model needs a name",
                field="model_name",
                received=self.model_name,
                expected="the registered model name",
            )

    def _check_security(self) -> None:
        if self.feedback_auth not in FEEDBACK_AUTH:
            raise ServingError(
                "unknown feedback authentication",
                field="feedback_auth",
                received=self.feedback_auth,
                expected="token, signed_id or none",
            )
        if self.feedback_auth == "none" and not is_loopback_host(self.host):
            _refuse_none(self.host)
        needed = {
            "token": ("feedback_token", "feedback_token_env"),
            "signed_id": ("feedback_secret", "feedback_secret_env"),
        }
        for auth, (name, key) in needed.items():
            value = getattr(self, name)
            if self.feedback_auth == auth and (not value or len(value) < MIN_SECRET_CHARS):
                raise ServingError(
                    f"feedback_auth: {auth} needs a secret of at least {MIN_SECRET_CHARS} characters",
                    field=f"deployment.{key}",
                    received=None if not value else f"{len(value)} characters",
                    expected=_SECRET_HINT,
                )
        if self.admin_token is not None and len(self.admin_token) < MIN_SECRET_CHARS:
            raise ServingError(
                "the admin token is too short",
                field="deployment.admin_token_env",
                received=f"{len(self.admin_token)} characters",
                expected=_SECRET_HINT,
            )

    def _check_numbers(self) -> None:
        ints = (
            "max_batch_size",
            "max_body_bytes",
            "max_rows_per_request",
            "max_errors",
            "max_string_length",
            "max_header_count",
            "max_request_line_bytes",
            "max_header_bytes",
            "max_concurrent_connections",
            "keep_alive_timeout_s",
        )
        for name in ints:
            value = getattr(self, name)
            if (name, value) in (("max_string_length", None), ("max_body_bytes", 0)):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ServingError(
                    "must be at least 1", field=name, received=value, expected="an integer >= 1"
                )
        for name in ("max_batch_delay_ms", "range_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ServingError(
                    "must be a number >= 0", field=name, received=value, expected="a number >= 0"
                )
        value = self.read_timeout_s
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ServingError(
                "must be a number > 0", field="read_timeout_s", received=value, expected="a number > 0"
            )

    def _check_body_limit(self) -> None:
        """Derive ``max_body_bytes`` from the row limit, or refuse one that cannot hold it."""
        from mlsd.data import Schema
        from mlsd.serving.validation import MIN_BODY_BYTES, body_limit_for

        schema = Schema.from_dict(self.model.schema) if self.model.schema else Schema(columns={})
        needed = body_limit_for(schema, list(self.model.input_columns), self.max_rows_per_request)
        if self.max_body_bytes == 0:
            self.max_body_bytes = max(MIN_BODY_BYTES, needed)
        elif self.max_body_bytes < needed:
            raise ServingError(
                f"a body of max_rows_per_request={self.max_rows_per_request} rows as large as the "
                f"largest build row needs {needed} bytes",
                field="max_body_bytes",
                received=self.max_body_bytes,
                expected=f"at least {needed}, or no max_body_bytes (derived), or fewer max_rows_per_request",
            )


def _refuse_none(host: str) -> None:
    # anyone who reaches the port could write outcomes, and the first one wins
    raise ServingError(
        f"feedback without authentication is allowed only on a loopback host, not {host}",
        field="deployment.feedback_auth",
        received="none",
        expected="token or signed_id, or a loopback host (127.0.0.1, ::1, localhost)",
    )


#: the ``model_version`` logged for rows the rule baseline answered: not a registry version (those
#: start at 1), and the log's column is NOT NULL
BASELINE_VERSION = 0


def rule_baseline(design: Any, model: PackagedModel) -> tuple[Any, str | None]:
    """The design's rule baseline as a fallback for ``model`` (the champion), or why there is none.

    Returns ``(Variant("baseline", ..., BASELINE_VERSION), None)`` or ``(None, reason)``. The
    first ``{rule: ...}`` of ``models.baseline`` is used. A rule needs no training rows: a binary
    rule is "fitted" on two empty rows typed as requests are, labelled with the champion's two
    classes (fit only records them and checks that the rule reads); a regression rule needs both
    ``score_if_true`` and ``score_if_false``, since learning them needs the training rows. The
    rule reads the rows the server validated (the champion's input columns), plus the derived
    columns it names, computed as training computed them; a rule reading another column is refused.
    Its decision is the baseline's own (score >= 0.5), not the champion's cost-optimal threshold.

    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> from sklearn.linear_model import LogisticRegression
    >>> from mlsd.store import PackagedModel
    >>> X = pd.DataFrame({"sched_dep_time": [600.0, 900.0, 1800.0, 2100.0]})
    >>> champion = PackagedModel(pipeline=LogisticRegression().fit(X, [0, 0, 1, 1]), task="binary")
    >>> design = SimpleNamespace(
    ...     models=SimpleNamespace(baselines=lambda: ["majority", {"rule": "dep_hour >= 17"}]),
    ...     data=SimpleNamespace(derive={"dep_hour": "sched_dep_time // 100"}),
    ... )
    >>> variant, why = rule_baseline(design, champion)
    >>> variant.alias, variant.version, why
    ('baseline', 0, None)
    >>> variant.model.predict_frame(X)["decision"].tolist()
    [False, False, True, True]
    >>> design.models.baselines = lambda: ["majority"]
    >>> rule_baseline(design, champion)
    (None, 'the design has no rule baseline (models.baseline: {rule: ...})')
    """
    from sklearn.pipeline import Pipeline

    from mlsd.data import Schema, parse_expression
    from mlsd.features import DeriveColumns
    from mlsd.modeling import make_baseline
    from mlsd.serving.routing import BASELINE, Variant
    from mlsd.serving.validation import RowValidator
    from mlsd.store.packaged import PackagedModel

    specs = [s for s in design.models.baselines() if isinstance(s, dict) and "rule" in s]
    if not specs:
        return None, "the design has no rule baseline (models.baseline: {rule: ...})"
    spec, task = specs[0], model.task
    rule = spec["rule"]
    if task not in ("binary", "regression"):
        return None, f"a rule baseline cannot answer for a {task} task"
    if task == "regression" and any(spec.get(k) is None for k in ("score_if_true", "score_if_false")):
        return None, (
            f"the rule baseline {rule!r} learns its values from the training rows, which a server "
            "does not have (give score_if_true and score_if_false)"
        )
    # the derived columns the rule reads, through chains, in the design's order
    derive = dict(design.data.derive)
    needed, pending = set(), list(parse_expression(rule, field="models.baseline.rule").columns)
    raw: set[str] = set()
    while pending:
        col = pending.pop()
        if col in needed or col in raw:
            continue
        if col in derive:
            needed.add(col)
            pending.extend(parse_expression(derive[col], field=f"data.derive.{col}").columns)
        else:
            raw.add(col)
    unread = sorted(raw - set(model.input_columns))
    if unread:
        return None, (
            f"the rule baseline {rule!r} reads {', '.join(unread)}, which requests to this model do "
            "not carry (not among its input columns)"
        )
    try:
        # two rows typed exactly as the validator types a request, every value missing
        empty = RowValidator(
            Schema.from_dict(model.schema) if model.schema else Schema(columns={}), model.input_columns
        ).check([{}, {}])
        estimator = make_baseline(spec, task)
        pipeline = Pipeline(
            [("derive", DeriveColumns({c: e for c, e in derive.items() if c in needed})), ("rule", estimator)]
        )
        if task == "binary":
            classes = list(model.classes)
            if sorted(classes) != classes:  # the rule's probability is of its greater class
                return None, f"the rule baseline scores the greater class, not the champion's {classes[1]!r}"
            pipeline.fit(empty.frame, classes)
        else:  # both values given: the targets are not read
            pipeline.fit(empty.frame, [0.0, 0.0])
        packaged = PackagedModel(
            pipeline=pipeline,
            task=task,
            threshold=0.5 if task == "binary" else None,
            input_columns=list(model.input_columns),
            classes=list(model.classes) if task == "binary" else [],
            metadata={"baseline": f"rule: {rule}"},
        )
    except Exception as exc:  # the server still starts; a champion failure is then an error
        return None, f"the rule baseline {rule!r} cannot be built: {type(exc).__name__}: {str(exc)[:200]}"
    return Variant(BASELINE, packaged, BASELINE_VERSION), None


def _routing(
    system: Any, dep: Any, model: Any, name: str, version: int, log: Any, shadow_cpus: frozenset[int] | None
) -> Any:
    """The rollout of ``dep.strategy``: every alias it routes between, loaded once, here, and
    the design's rule baseline, which answers when the champion fails."""
    import logging

    from mlsd.errors import RegistryError
    from mlsd.serving.routing import Routing, Variant

    baseline, no_baseline = rule_baseline(system.design, model)
    if no_baseline is not None:  # a rule the server cannot use is a warning; no rule at all is not
        has_rule = any(isinstance(b, dict) and "rule" in b for b in system.design.models.baselines())
        level = logging.WARNING if has_rule else logging.INFO
        logging.getLogger("mlsd.serving").log(level, "no fallback for the champion: %s", no_baseline)
    fallback = {"baseline": baseline, "no_baseline": no_baseline}
    variants = {"champion": Variant("champion", model, version)}
    for alias in dep.routed_aliases():
        if alias in variants:
            continue
        try:
            other, _, other_version = system.champion(alias)
        except RegistryError as exc:
            raise ServingError(
                f"the {dep.strategy} rollout routes to {alias!r}, which is not registered for {name!r}",
                field="deployment.strategy",
                received=dep.strategy,
                expected=f"a version registered as {alias}: mlsd build FILE --alias {alias}",
            ) from exc
        if list(other.input_columns) != list(model.input_columns):
            raise ServingError(
                f"{alias} (version {other_version}) reads other input columns than the champion",
                field=f"deployment.{'traffic' if dep.strategy == 'ab' else 'challenger'}",
                received=list(other.input_columns),
                expected=", ".join(model.input_columns),
            )
        variants[alias] = Variant(alias, other, other_version)

    def load(alias: str) -> Variant:
        loaded, _, loaded_version = system.champion(alias)
        return Variant(alias, loaded, loaded_version)

    def registry() -> Any:
        from mlsd.store import ModelRegistry

        return ModelRegistry(system.workspace)

    goals = system.design.goals
    classes = list(model.classes)
    return Routing(
        dep,
        variants,
        log=log,
        model_name=name,
        task=model.task,
        costs=goals.costs,
        positive_class=classes[-1] if model.task == "binary" and classes else None,
        p99_limit_ms=goals.constraints.get("p99_latency_ms"),
        reload=lambda: registry().alias_versions(name),
        load=load,
        promote=lambda alias: registry().promote(name, alias),
        rollback=lambda: registry().rollback(name),
        shadow_cpus=shadow_cpus,
        **fallback,
    )


def settings_for(
    system: Any,
    *,
    log_url: str | None = None,
    host: str | None = None,
    environ: Any = None,
    shadow_cpus: frozenset[int] | None = None,
) -> ServeSettings:
    """The settings of the design's server: its champion from the registry, its log, its limits.

    ``log_url`` overrides ``deployment.log_url`` (e.g. a scratch log for a load test) and
    ``host`` overrides ``deployment.host``: the bound address decides the default feedback
    authentication (none on loopback, else token) and the default Host allow-list. Secrets are
    read from the environment (``environ``, default ``os.environ``) under the names the design gives.
    ``shadow_cpus`` are the cores a shadow deployment's scoring process may use (default: the server's).

    ``system`` is a :class:`mlsd.system.System`; the model is loaded once, here, so the server
    never touches the registry (nor MLflow's process-wide URI) while it answers.
    """
    env = os.environ if environ is None else environ
    dep = system.design.deployment
    host = host or dep.host
    auth = dep.feedback_auth or ("none" if is_loopback_host(host) else "token")
    if auth == "none" and not is_loopback_host(host):
        _refuse_none(host)  # before the model loads: a misuse fails at once
    token = env.get(dep.feedback_token_env) if auth == "token" else None
    secret = env.get(dep.feedback_secret_env) if auth == "signed_id" else None
    for needed, value, key, name in (
        ("token", token, "feedback_token_env", dep.feedback_token_env),
        ("signed_id", secret, "feedback_secret_env", dep.feedback_secret_env),
    ):
        if auth == needed and not value:
            how = (
                "the default on a non-loopback host"
                if dep.feedback_auth is None
                else "deployment.feedback_auth"
            )
            raise ServingError(
                f"feedback_auth: {auth} ({how}) needs the environment variable {name}, which is not set",
                field=f"deployment.{key}",
                received=name,
                expected=f"{name} set to {_SECRET_HINT}",
            )
    privacy = _privacy(system, env)  # before the model loads: a missing key fails at once
    model, name, version = system.champion()
    log = system.prediction_log(log_url)
    return ServeSettings(
        privacy=privacy,
        model=model,
        model_name=name,
        model_version=version,
        log=log,
        routing=_routing(system, dep, model, name, version, log, shadow_cpus),
        time_column=system.design.data.time,
        max_batch_size=dep.max_batch_size,
        max_batch_delay_ms=dep.max_batch_delay_ms,
        max_body_bytes=dep.max_body_bytes or 0,
        max_rows_per_request=dep.max_rows_per_request,
        reject_unseen_categories=dep.reject_unseen_categories,
        range_tolerance=dep.range_tolerance,
        max_string_length=dep.max_string_length,
        host=host,
        feedback_auth=auth,
        feedback_token=token,
        feedback_secret=secret,
        admin_token=env.get(dep.admin_token_env) or None,
        admin_token_env=dep.admin_token_env,
        allowed_hosts=tuple(h.lower() for h in dep.allowed_hosts) or default_allowed_hosts(host),
        cors_origins=tuple(dep.cors_origins),
        max_header_count=dep.max_header_count,
        max_request_line_bytes=dep.max_request_line_bytes,
        max_header_bytes=dep.max_header_bytes,
        max_concurrent_connections=dep.max_concurrent_connections,
        read_timeout_s=dep.read_timeout_s,
        keep_alive_timeout_s=dep.keep_alive_timeout_s,
    )


def _privacy(system: Any, env: Any) -> Any:
    """``data.privacy``'s treatment of request rows, with the key from the environment; refused
    when the key is missing or is not the key the champion's build used (docs/privacy.md)."""
    import json

    from mlsd.data.privacy import RowPrivacy, privacy_key
    from mlsd.errors import DesignError

    spec = system.design.data.privacy
    if spec is None:
        return None
    try:
        key = privacy_key(spec, env)
    except DesignError as exc:
        raise ServingError(
            f"the server pseudonymises requests as the build did: {exc.message}",
            field=exc.field,
            received=exc.received,
            expected=exc.expected,
        ) from None
    rows = RowPrivacy(spec, key)
    document = system.reports_dir / "design.json"
    built = None
    if document.is_file():
        built = ((json.loads(document.read_text()).get("data") or {}).get("privacy") or {}).get("key_check")
    if built is not None and built != rows.key_check:
        raise ServingError(
            f"the key in {spec.key_env} is not the key the champion was built with: its pseudonyms would "
            "match none the model learnt (a rotated key needs a new build)",
            field="data.privacy.key_env",
            received=f"a key with check {rows.key_check}",
            expected=f"the build's key (check {built}), or mlsd build with the new key",
        )
    return rows
