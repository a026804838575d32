"""Champion moves of the model registry: promote, rollback and the champion history.

Kept apart from :mod:`mlsd.store.registry` because it is the rollout's part of the registry
(``mlsd promote``/``rollback`` and the admin API call it) and reads no artefact: it only moves
the ``champion`` alias and keeps the tag ``mlsd.champion_history`` in step with it, so a rollback
knows where to go back to. :class:`ChampionMoves` is a mixin of
:class:`~mlsd.store.registry.ModelRegistry`, which supplies ``client`` and the lookups.

>>> from mlsd.store.registry import ModelRegistry
>>> issubclass(ModelRegistry, ChampionMoves), CHAMPION_HISTORY_TAG
(True, 'mlsd.champion_history')
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from mlsd.errors import RegistryError

if TYPE_CHECKING:  # MLflow is imported where it is used: checking a champion needs none of it
    from mlflow import MlflowClient

__all__ = ["CHAMPION_HISTORY_TAG", "ChampionMoves"]

# Tag of a registered model: the versions that were champion, oldest first (a JSON list), so a
# rollback knows where to go back to. Kept to its last entries: MLflow caps a tag's length.
CHAMPION_HISTORY_TAG = "mlsd.champion_history"
_HISTORY_KEPT = 200


@contextmanager
def _moving_champion(name: str, client: MlflowClient, *, back_to: int | None) -> Iterator[None]:
    """Move the champion alias and its history together: if either write fails, the alias goes
    back to ``back_to`` (the history is written last, so it never holds a move that failed)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        with suppress(MlflowException):
            if back_to is None:
                client.delete_registered_model_alias(name, "champion")
            else:
                client.set_registered_model_alias(name, "champion", str(back_to))
        raise RegistryError(
            f"cannot move the champion alias: {exc.message}",
            field="name",
            received=name,
            expected="a writable mlflow.db",
        ) from exc


class ChampionMoves:
    """Promote, roll back and read the champion history (a mixin of ``ModelRegistry``)."""

    if TYPE_CHECKING:  # ModelRegistry's, made on first use

        @property
        def client(self) -> MlflowClient: ...

    if TYPE_CHECKING:  # supplied by ModelRegistry

        def _require_model(self, name: str) -> None: ...

        def _resolve(self, name: str, alias: str) -> str: ...

    def alias_versions(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` and the version it points at, e.g. ``{"champion": 3}``."""
        self._require_model(name)
        aliases = self.client.get_registered_model(name).aliases
        return {alias: int(version) for alias, version in sorted(aliases.items())}

    def champion_history(self, name: str) -> list[int]:
        """The versions that were champion of ``name``, oldest first (tag ``mlsd.champion_history``)."""
        self._require_model(name)
        return self._history(name)

    def promote(self, name: str, alias: str = "challenger") -> tuple[int | None, int]:
        """Make the version behind ``alias`` the champion: ``(old champion or None, new champion)``.

        The new champion is appended to the champion history, so :meth:`rollback` can undo it.
        ``alias`` keeps pointing at its version. Promoting the champion itself changes nothing.
        """
        if alias == "champion":
            raise RegistryError(
                "the champion cannot be promoted to champion",
                field="alias",
                received=alias,
                expected="the alias of another version, e.g. challenger",
            )
        new = int(self._resolve(name, alias))
        old = self.alias_versions(name).get("champion")
        if old == new:
            return old, new
        with _moving_champion(name, self.client, back_to=old):
            self.client.set_registered_model_alias(name, "champion", str(new))
            self._record_champion(name, new, old)
        return old, new

    def rollback(self, name: str) -> tuple[int, int]:
        """Point ``champion`` back at the previous champion: ``(from version, to version)``.

        Walks the champion history back one step (the entry of the champion it leaves is
        dropped, so a second rollback goes one further back). RegistryError when there is no
        champion or no earlier one to go back to.
        """
        current = self.alias_versions(name).get("champion")
        if current is None:
            raise RegistryError(
                f"model {name!r} has no champion to roll back",
                field="alias",
                received="champion",
                expected="a champion set by a build or by promote",
            )
        history = self._history(name)
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise RegistryError(
                f"model {name!r} has no previous champion to roll back to",
                field=CHAMPION_HISTORY_TAG,
                received=self._history(name),
                expected=f"an earlier champion than version {current}",
            )
        target = history[-1]
        with _moving_champion(name, self.client, back_to=current):
            self.client.set_registered_model_alias(name, "champion", str(target))
            self.client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history))
        return current, target

    def _alias_version(self, name: str, alias: str) -> int | None:
        version = self.client.get_registered_model(name).aliases.get(alias)
        return None if version is None else int(version)

    def _history(self, name: str) -> list[int]:
        text = self.client.get_registered_model(name).tags.get(CHAMPION_HISTORY_TAG)
        try:
            values = json.loads(text) if text else []
        except json.JSONDecodeError:
            values = None
        if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
            raise RegistryError(
                f"model {name!r}: the champion history tag is not a list of versions",
                field=CHAMPION_HISTORY_TAG,
                received=text,
                expected="a JSON list of version numbers, e.g. [1, 3]",
            )
        return values

    def _record_champion(self, name: str, version: int, previous: int | None) -> None:
        history = self._history(name)
        if not history and previous is not None:  # a champion set before the history was kept
            history = [previous]
        if not history or history[-1] != version:
            history.append(version)
        self.client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history[-_HISTORY_KEPT:]))
