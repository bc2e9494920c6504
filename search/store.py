"""The local store: one directory holding the Optuna study, the MLflow runs and artifacts, Ray's results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Store:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> "Store":
        return cls(Path(path).expanduser().resolve())

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    @property
    def mlflow_url(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def ray_results(self) -> Path:
        return self.root / "ray"

    def exists(self) -> bool:
        return (self.root / "optuna.db").is_file()

    def create(self) -> None:
        for d in (self.root, self.artifacts, self.ray_results):
            d.mkdir(parents=True, exist_ok=True)
