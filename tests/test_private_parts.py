"""search/private_parts.py: every private part of Ray, Optuna and MLflow hpsearch reaches is listed once, and
each is there on the pinned versions (constraints.txt)."""

import re
from pathlib import Path

import pytest

from search import private_parts
from search.private_parts import Reach

ROOT = Path(__file__).resolve().parents[1]


def test_every_private_part_is_there_on_the_pinned_ray_optuna_and_mlflow():
    assert [r.what for r in private_parts.missing()] == []


def test_each_listed_part_is_reached_where_the_list_says():
    for reach in private_parts.REACHES:
        name = re.split(r"[:.#]", reach.what)[-1]
        for where in reach.where.split(", "):
            source = (ROOT / "search" / where).read_text()
            assert name in source, f"{reach.what} is listed for {where}, which does not name {name}"


@pytest.mark.parametrize(
    "what",
    [
        "ray._private.no_such_module:thing",  # a module that moved
        "optuna.storages:RDBStorage._no_such_helper",  # a method that was renamed
        "optuna.trial:Trial#_no_such_attribute",  # an attribute the class no longer sets
        "mlflow.tracking:MlflowClient#_tracking_client.extra",  # an instance attribute taken for a path
    ],
)
def test_a_part_that_moved_is_named_as_missing(what, monkeypatch):
    gone = Reach(what, "nowhere", "a test", "nothing")
    monkeypatch.setattr(private_parts, "REACHES", (*private_parts.REACHES, gone))
    assert private_parts.missing() == [gone]
