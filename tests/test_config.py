"""Typed configs: strict keys with suggestions, type checks, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from iconet.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from iconet.models import make_config
from iconet.models.iconet import ICONetConfig


def test_misspelt_key_names_it_and_the_closest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown key 'model.widht'.*did you mean 'width'"):
        make_config({"name": "iconet", "widht": 32})


def test_wrong_types_are_refused():
    with pytest.raises(ConfigError, match="'model.width' must be an integer"):
        make_config({"name": "iconet", "width": "wide"})
    with pytest.raises(ConfigError, match="must be true or false"):
        make_config({"name": "iconet", "rec_branch": "yes"})


def test_float_literals_without_a_dot_are_numbers():
    # PyYAML reads "1e-4" as a string; typed float fields accept it, other strings are refused.
    from iconet.losses import LossConfig

    assert from_dict(LossConfig, apply_overrides({}, ["rec_weight=1e-4"])).rec_weight == 1e-4
    with pytest.raises(ConfigError, match="must be a number"):
        from_dict(LossConfig, {"rec_weight": "half"})


def test_unknown_model_name_suggests():
    with pytest.raises(ConfigError, match="did you mean 'iconet'"):
        make_config("icnet")


@dataclass
class Inner:
    a: int = 1
    b: list[float] = field(default_factory=list)


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    tag: str = "x"


def test_nested_round_trip_and_overrides(tmp_path):
    data = apply_overrides({"inner": {"a": 2}}, ["inner.b=[0.5, 1]", "tag=run1"])
    cfg = from_dict(Outer, data)
    assert cfg == Outer(Inner(2, [0.5, 1.0]), "run1")
    assert from_dict(Outer, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"unknown key 'inner.c'"):
        from_dict(Outer, apply_overrides({}, ["inner.c=3"]))
    p = tmp_path / "x.yaml"
    p.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(p)


def test_config_defaults_round_trip():
    cfg = ICONetConfig(scale=4)
    assert make_config(to_dict(cfg)) == cfg
