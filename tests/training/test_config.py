"""Config: defaults follow the paper, file < shorthand flags < --set, unknown keys and bad values refused."""

from __future__ import annotations

import json

import pytest

from training.config import ConfigError, RunConfig, parse


def test_defaults_are_the_papers_recipe():
    config = RunConfig()
    assert (config.model.lora_r, config.model.lora_alpha, config.model.lora_dropout) == (16, 32, 0.1)
    assert config.model.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (config.stage1.batch_size, config.stage1.num_negatives, config.stage1.max_length) == (128, 7, 512)
    assert (config.stage1.learning_rate, config.stage2.learning_rate) == (2e-5, 1.5e-5)
    assert config.stage1.in_batch_tasks == ["retrieval"] and config.stage2.in_batch_tasks == []
    assert config.stage1.warmup_steps == config.stage2.warmup_steps == 50
    assert config.stage1.temperature == 0.02


def test_file_then_flags_then_set(tmp_path, data_files):
    file = tmp_path / "run.yaml"
    file.write_text(f"""
output_dir: {tmp_path}/out
model: {{base: default, num_layers: 4}}
stage1: {{data: [{data_files['retrieval']}], steps: 7, learning_rate: 1e-4}}
stage2: {{data: [{data_files['sts']}], steps: 9}}
""")
    config = parse(["--config", str(file), "--stage2-steps", "11", "--batch-size", "8", "--max-length", "64",
                    "--set", "stage2.in_batch_tasks=[retrieval]", "--set", "model.num_layers=null"])
    assert config.stage1.steps == 7 and config.stage2.steps == 11
    assert config.stage1.learning_rate == 1e-4  # YAML's `1e-4` (a string to YAML 1.1) read as a number
    assert config.stage1.batch_size == config.stage2.batch_size == 8
    assert config.stage1.max_length == config.stage2.max_length == config.eval.max_length == 64
    assert config.stage2.in_batch_tasks == ["retrieval"] and config.model.num_layers is None


def test_json_config(tmp_path, data_files):
    file = tmp_path / "run.json"
    file.write_text(json.dumps({"stage1": {"data": [str(data_files["retrieval"])]},
                                "stage2": {"data": [str(data_files["sts"])], "chunk_size": 16}}))
    assert parse(["--config", str(file)]).stage2.chunk_size == 16


@pytest.mark.parametrize("args, message", [
    (["--set", "stage1.learning_rat=1"], "unknown config key 'stage1.learning_rat'"),
    (["--set", "stage1.steps=many"], "stage1.steps: expected an integer"),
    (["--set", "stage2.in_batch_tasks=[ranking]"], "unknown task 'ranking'"),
    (["--stage1-steps", "0"], "stage1.steps must be at least 1"),
    (["--stages", "3"], "stages must be"),
    (["--set", "model.dtype=float16"], "model.dtype must be"),
    (["--chunk-size", "0"], "chunk_size must be at least 1"),
    (["--set", "stage1.distill_weight=-1"], "stage1: distill_weight must not be negative"),
    (["--set", "stage2.teacher_temperature=0"], "teacher_temperature must be positive"),
    (["--stage1-steps", "100", "--set", "stage1.decay_steps=0"], "stage1.decay_steps 0 must be between 1 and"),
    (["--stage1-steps", "100", "--set", "stage1.decay_steps=60"], "must be between 1 and steps - warmup_steps \\(50\\)"),
])
def test_bad_values(data_files, args, message):
    base = ["--stage1-data", str(data_files["retrieval"]), "--stage2-data", str(data_files["sts"])]
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse(base + args)


def test_missing_data_file_and_empty_stage(tmp_path, data_files):
    with pytest.raises(ConfigError, match="file not found"):
        parse(["--stage1-data", str(tmp_path / "nope.jsonl"), "--stage2-data", str(data_files["sts"])])
    with pytest.raises(ConfigError, match="stage2.data is empty"):
        parse(["--stage1-data", str(data_files["retrieval"])])
    assert parse(["--stage1-data", str(data_files["retrieval"]), "--stages", "1"]).stages == [1]


def test_shipped_config_files_parse():
    from pathlib import Path

    from training.config import from_dict, read_file

    root = Path(__file__).resolve().parents[2] / "training" / "configs"
    files = sorted(root.glob("*.yaml"))
    assert {f.name for f in files} >= {"cpu-small.yaml", "nv-embed-v2-7b.yaml"}
    for file in files:
        config = from_dict(read_file(file))  # no unknown key, every value of the right type
        assert config.stage1.data and (config.stage2.data or 2 not in config.stages)


def test_extends_merges_sections_and_replaces_lists(tmp_path, data_files):
    (tmp_path / "base.yaml").write_text(f"""
output_dir: {tmp_path}/base
model: {{base: default, num_layers: 4}}
stage1: {{data: [{data_files['retrieval']}, {data_files['sts']}], steps: 7, learning_rate: 1e-4}}
stages: [1]
""")
    (tmp_path / "legs").mkdir()
    leg = tmp_path / "legs" / "leg.yaml"
    leg.write_text(f"""
extends: ../base.yaml
output_dir: {tmp_path}/leg
stage1: {{data: [{data_files['retrieval']}], steps: 9}}
""")
    config = parse(["--config", str(leg)])
    assert config.output_dir == f"{tmp_path}/leg"
    assert config.stage1.data == [str(data_files["retrieval"])]  # the list is replaced, not appended to
    assert (config.stage1.steps, config.stage1.learning_rate) == (9, 1e-4)  # the section is merged key by key
    assert (config.model.base, config.model.num_layers, config.stages) == ("default", 4, [1])
    assert parse(["--config", str(leg), "--set", "stage1.steps=11"]).stage1.steps == 11


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, "makes a cycle"),
        ({"a.yaml": "extends: a.yaml\n"}, "makes a cycle"),
        ({"a.yaml": "extends: missing.yaml\n"}, "config file not found"),
        ({"a.yaml": "extends: [b.yaml]\n"}, "extends: expected a file name"),
    ],
)
def test_extends_errors_name_the_file(tmp_path, files, message):
    from training.config import read_file

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_file(tmp_path / "a.yaml")


def test_leg_configs_extend_the_leg_before():
    """Legs 3 and later name only what changed; each still resolves to a full, valid run."""
    from pathlib import Path

    from training.config import from_dict, read_file

    root = Path(__file__).resolve().parents[2] / "training" / "configs"
    for number in range(3, 7):
        leg = read_file(root / f"default-long-{number}.yaml")
        assert leg["output_dir"] == f"runs/long{number}"
        config = from_dict(leg)
        assert (config.stage1.batch_size, config.stage1.max_length, config.stages) == (64, 64, [1])
