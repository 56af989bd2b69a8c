import pytest
from conftest import ROOT

from musicsep import MusicsepError
from musicsep.workflow.config import constant, layer, load_yaml, validate

SCHEMA = ROOT / "config" / "schema.yaml"


def walk(schema, path=()):
    for key, sub in schema.get("properties", {}).items():
        yield path + (key,), sub
        yield from walk(sub, path + (key,))


def validate_value(value, schema) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(schema).is_valid(value)


def test_every_key_has_description_and_default():
    schema = load_yaml(SCHEMA)
    keys = list(walk(schema))
    assert len(keys) > 20
    for path, sub in keys:
        assert sub.get("description"), f"{'.'.join(path)} has no description"
        assert ("default" in sub) != ("default_constant" in sub), f"{'.'.join(path)}: one default expected"
        if "default_constant" in sub:       # a constant of the package, of a type the schema allows
            assert validate_value(constant(sub["default_constant"]), sub), '.'.join(path)


def test_repository_config_is_valid_and_equals_defaults():
    config = validate(load_yaml(ROOT / "config" / "config.yaml"), SCHEMA)
    assert config == validate({}, SCHEMA), "config/config.yaml and the schema's defaults disagree"
    assert config["dataset"]["path"] is None
    assert config["features"] == {"n_fft": 2048, "hop": 512, "log_eps": 1e-6, "n_mels": 300}
    assert sorted(config["experiments"]) == ["baseline", "centroids", "dpcl"]
    assert config["training"]["lr"] == 2e-4 and config["training"]["batch_size"] == 20


def test_defaults_fill_partial_blocks():
    config = validate({"data": {"mono": True}}, SCHEMA)
    assert config["data"]["mono"] is True
    assert config["data"]["sample_rate"] == 44100
    assert config["data"]["valid"]["fraction"] == 0.15


def test_unknown_key_is_named():
    with pytest.raises(MusicsepError, match=r"unknown config key data\.sampel_rate .*sample_rate"):
        validate({"data": {"sampel_rate": 16000}}, SCHEMA)
    with pytest.raises(MusicsepError, match=r"unknown config key bogus"):
        validate({"bogus": 1}, SCHEMA)


def test_wrong_type_is_named():
    with pytest.raises(MusicsepError, match=r"config key data\.sample_rate: 'fast' is not of type 'integer'"):
        validate({"data": {"sample_rate": "fast"}}, SCHEMA)
    with pytest.raises(MusicsepError, match=r"dataset\.toy\.format"):
        validate({"dataset": {"toy": {"format": "flac"}}}, SCHEMA)


def test_strings_from_the_command_line_are_coerced():
    config = validate({"dataset": {"path": "null", "toy": {"train_tracks": "2", "duration": "3.5"}},
                       "data": {"mono": "true"}, "results": "123"}, SCHEMA)
    assert config["dataset"]["path"] is None
    assert config["dataset"]["toy"]["train_tracks"] == 2 and config["dataset"]["toy"]["duration"] == 3.5
    assert config["data"]["mono"] is True and config["results"] == "123"
    config = validate({"experiments": {"x": {"model": "blstm_mask", "training": {"epochs": "3"}}}}, SCHEMA)
    assert config["experiments"]["x"]["training"]["epochs"] == 3
    with pytest.raises(MusicsepError, match="data.sample_rate: '44.1k' is not of type 'integer'"):
        validate({"data": {"sample_rate": "44.1k"}}, SCHEMA)


def test_toy_config_layers_on_the_default():
    """As `make run` layers them (Snakemake's --configfile merge, tested against
    snakemake.utils.update_config in test_config_check.py)."""
    config = validate(layer([load_yaml(ROOT / "config" / "config.yaml"), load_yaml(ROOT / "config" / "toy.yaml")]),
                      SCHEMA)
    assert config["experiments"]["baseline"]["model_args"] == {"hidden": 48, "layers": 2, "dropout": 0.1}
    assert config["training"]["epochs"] == 5 and config["training"]["plateau_factor"] == 0.5


@pytest.mark.parametrize("block, message", [
    ({"x": {"model": "unet"}}, "experiments.x.model: unknown model 'unet' (known: blstm_mask"),
    ({"x": {"model": "blstm_mask", "loss": "dc"}}, "experiments.x.loss: 'dc' does not fit model blstm_mask"),
    ({"x": {"model": "blstm_mask", "los": "l1"}}, "unknown config key experiments.x.los"),
    ({"x": {"model": "blstm_mask", "training": {"lr": "fast"}}}, "experiments.x.training.lr: 'fast' is not of type"),
    ({"x": {"model": "blstm_mask", "training": {"epoch": 3}}}, "unknown config key experiments.x.training.epoch"),
    ({"bad name": {"model": "blstm_mask"}}, "'bad name' does not match"),
])
def test_bad_experiment_blocks_are_named(block, message):
    """Named by the schema, or by the model registry when the workflow checks the experiments."""
    from musicsep.workflow.plan import experiment_specs

    with pytest.raises(MusicsepError, match=message.replace(".", r"\.").replace("(", r"\(")):
        experiment_specs(validate({"experiments": block}, SCHEMA))


@pytest.mark.parametrize("config, message", [
    ({"training": {"select_by": "sdr", "sdr_every": 0}},
     "config key training.select_by: 'sdr' needs training.sdr_every > 0"),
    ({"training": {"sdr_every": 2}, "experiments": {"x": {"model": "blstm_mask", "training": {
        "select_by": "sdr", "sdr_every": 0}}}},
     "config key experiments.x.training.select_by: 'sdr' needs experiments.x.training.sdr_every > 0"),
    ({"training": {"select_by": "sdr"}, "experiments": {"x": {"model": "blstm_mask", "training": {
        "sdr_every": 0}}}},
     "config key training.select_by: 'sdr' needs experiments.x.training.sdr_every > 0"),
    ({"training": {"select_by": "sdr_mean"}}, "training.select_by: 'sdr_mean' is not one of"),
])
def test_select_by_sdr_needs_sdr_every(config, message):
    """Checked on each experiment's training block as it trains: the shared one under its own."""
    with pytest.raises(MusicsepError, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate(config, SCHEMA)


def test_select_by_sdr_with_sdr_every():
    assert validate({"training": {"select_by": "sdr", "sdr_every": 3}}, SCHEMA)["training"]["sdr_every"] == 3
    validate({"training": {"select_by": "sdr", "sdr_every": 0}, "experiments": {"x": {
        "model": "blstm_mask", "training": {"sdr_every": 1}}}}, SCHEMA)
