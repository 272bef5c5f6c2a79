from __future__ import annotations

import pytest

from services.trainer.config import MIX_VARIANTS, TrainerConfig, load_config
from shared.enums import ExampleVariant
from shared.errors import ConfigError


def test_environment_is_read_with_the_trainer_prefix(monkeypatch) -> None:
    monkeypatch.setenv("TRAINER_MIN_NEW_EXAMPLES", "7")
    monkeypatch.setenv("TRAINER_INTERVAL_MINUTES", "2.5")
    monkeypatch.setenv("TRAINER_LORA_TARGET_MODULES", "q_proj, v_proj")
    monkeypatch.setenv("TRAINER_VARIANT_MIX", "stand")
    monkeypatch.setenv("TRAINER_GATE_PRIMARY_METRIC", "pass@1")
    config = load_config()
    assert config.min_new_examples == 7
    assert config.interval_minutes == 2.5
    assert config.lora_target_modules == ["q_proj", "v_proj"]
    assert config.variants == (ExampleVariant.STAND,)
    assert config.gate_primary_metric == "pass@1"


def test_gate_settings_and_their_defaults(monkeypatch) -> None:
    config = load_config()
    assert (
        config.gate_min_heldout_tasks,
        config.gate_alpha,
        config.gate_small_sample_policy,
        config.gate_retention_tolerance,
    ) == (30, 0.05, "promote_on_nll", 0.05)
    monkeypatch.setenv("TRAINER_GATE_SMALL_SAMPLE_POLICY", "hold")
    monkeypatch.setenv("TRAINER_GATE_MIN_HELDOUT_TASKS", "50")
    config = load_config()
    assert (config.gate_small_sample_policy, config.gate_min_heldout_tasks) == ("hold", 50)
    monkeypatch.setenv("TRAINER_GATE_SMALL_SAMPLE_POLICY", "promote")
    with pytest.raises(ConfigError) as err:
        load_config()
    assert err.value.message == (
        "invalid configuration: TRAINER_GATE_SMALL_SAMPLE_POLICY: Input should be 'hold' or"
        " 'promote_on_nll'"
    )
    monkeypatch.delenv("TRAINER_GATE_SMALL_SAMPLE_POLICY")
    with pytest.raises(ConfigError) as err:
        load_config(gate_alpha=1.5)
    assert err.value.message == (
        "invalid trainer configuration: gate_alpha: Input should be less than 1"
    )


def test_bad_environment_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("TRAINER_EPOCHS", "0")
    with pytest.raises(ConfigError) as err:
        load_config()
    assert err.value.message == (
        "invalid configuration: TRAINER_EPOCHS: Input should be greater than or equal to 1"
    )


def test_overrides_win_and_are_validated() -> None:
    assert load_config(lora_rank=4).lora_rank == 4
    with pytest.raises(ConfigError) as err:
        load_config(lora_rnk=4, epocs=2)
    assert err.value.message == "unknown trainer setting(s): epocs, lora_rnk"
    with pytest.raises(ConfigError) as err:
        load_config(variant_mix="everything")
    assert err.value.message == (
        "invalid trainer configuration: variant_mix: Input should be 'persd', 'persd_refine',"
        " 'persd_combined' or 'stand'"
    )
    with pytest.raises(ConfigError) as err:
        load_config(device="cpu", dtype="bfloat16")
    assert err.value.message == (
        "invalid trainer configuration: dtype bfloat16 needs device cuda (TRAINER_DEVICE);"
        " CPU training runs in float32"
    )


def test_variant_mixes() -> None:
    assert MIX_VARIANTS == {
        "persd": (ExampleVariant.PERSD,),
        "persd_refine": (ExampleVariant.PERSD_REFINE,),
        "persd_combined": (ExampleVariant.PERSD, ExampleVariant.PERSD_REFINE),
        "stand": (ExampleVariant.STAND,),
    }


def test_every_setting_is_documented() -> None:
    # The config object is the documentation: a field without an explanation is a defect.
    undocumented = [
        name for name, field in TrainerConfig.model_fields.items() if not field.description
    ]
    assert undocumented == []


def test_snapshot_resolves_paths(tmp_path) -> None:
    config = load_config(adapter_dir=str(tmp_path / "a"), base_model="/models/x")
    snap = config.snapshot()
    assert snap["adapter_dir"] == str((tmp_path / "a").resolve())
    assert snap["base_model"] == "/models/x"
    assert "check_interval_s" not in snap
    assert snap["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_target_modules_accept_a_comma_list_or_json(monkeypatch) -> None:
    from services.trainer.config import load_config

    monkeypatch.setenv("TRAINER_LORA_TARGET_MODULES", "q_proj, v_proj")
    assert load_config().lora_target_modules == ["q_proj", "v_proj"]
    monkeypatch.setenv("TRAINER_LORA_TARGET_MODULES", '["q_proj", "up_proj"]')
    assert load_config().lora_target_modules == ["q_proj", "up_proj"]
    monkeypatch.setenv("TRAINER_LORA_TARGET_MODULES", "[q_proj")
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "TRAINER_LORA_TARGET_MODULES: not a JSON list of module names" in err.value.message
