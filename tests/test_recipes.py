"""Recipe schema, built-in recipes and the recipes command."""

import pytest

from conftest import assert_clean_error, run_cli
from edgenn import recipe as rc
from edgenn.errors import ConfigError

ISSUE_RECIPES = {"float16", "dynamic-range", "int8-ptq", "int8-qat", "prune-80-int8",
                 "prune-2of4-int8", "cluster-16-int8", "distill-half-int8",
                 "prune-cluster-qat-int8"}


def test_builtin_recipes_all_validate():
    names = set(rc.builtin_recipes())
    assert ISSUE_RECIPES <= names
    for name in names:
        recipe = rc.load(name)
        assert recipe.name == name


def test_recipe_steps_are_typed():
    recipe = rc.load("prune-cluster-qat-int8")
    assert [s.technique for s in recipe.steps] == ["prune", "cluster", "quantize"]
    assert recipe.steps[0].config.target_sparsity == 0.5
    assert recipe.steps[1].config.preserve_sparsity is True
    assert recipe.export[0].quantization is rc.Quantization.int8
    assert rc.load("prune-2of4-int8").steps[0].config.structure == "2:4"


BAD = """\
name: broken
steps:
  - prune:
      target_sparsity: 1.5
      colour: red
  - cluster: {clusters: 16}
    quantize: {}
export:
  quantization: int9
evaluate: {metric: accuracy}
mystery: 1
"""


def test_validate_reports_every_error_with_line_and_valid_keys(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        rc.load(str(path))
    problems = info.value.problems
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert f"{path}:4: steps.0.prune.target_sparsity" in text and "1.5" in text
    assert f"{path}:5: steps.0.prune.colour: unknown key 'colour'; valid keys:" in text
    assert "target_sparsity" in [p for p in problems if "colour" in p][0]
    assert f"{path}:6: steps.1: a step is one technique key" in text
    assert "int9" in text and "'int8'" in text
    assert f"{path}:11: mystery: unknown key 'mystery'; valid keys: constraints, description" in text


def test_cross_field_checks(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nexport: {quantization: float16, io: uint8}\n")
    with pytest.raises(ConfigError, match="io uint8 needs quantization int8"):
        rc.load(str(path))
    path.write_text("name: x\nsteps:\n  - prune: {target_sparsity: 0.5, structure: '4:2'}\n")
    with pytest.raises(ConfigError, match="structure must be 'M:N'"):
        rc.load(str(path))
    path.write_text("name: x\nsteps:\n  - distill: {student: 'builtin:width=2'}\n")
    with pytest.raises(ConfigError, match="builtin:width=F"):
        rc.load(str(path))


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "y.yaml"
    path.write_text("name: x\nsteps: [\n  - oops\n")
    with pytest.raises(ConfigError, match=r"y.yaml:\d+: invalid YAML"):
        rc.load(str(path))


def test_cli_list_show_validate(tmp_path):
    listed = run_cli("recipes", "list", "--json")
    assert listed.code == 0
    assert ISSUE_RECIPES <= {r["name"] for r in listed.json()["recipes"]}
    shown = run_cli("recipes", "show", "int8-ptq", "--json")
    assert shown.code == 0 and shown.json()["export"][0]["quantization"] == "int8"
    good = run_cli("recipes", "validate", str(rc.resolve("int8-qat")))
    assert good.code == 0
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(BAD)
    bad = run_cli("recipes", "validate", str(bad_file), "--json")
    assert bad.code == 2
    assert bad.json()["results"][0]["valid"] is False
    assert len(bad.json()["results"][0]["problems"]) == 5


def test_unknown_recipe_name_lists_known():
    r = run_cli("recipes", "show", "int7-ptq")
    assert_clean_error(r, 2, "unknown recipe 'int7-ptq'", "int8-ptq")


def test_recipes_readme_documents_every_key():
    """recipes/README.md names every key the schema accepts, so a new key cannot go undocumented."""
    from conftest import ROOT

    text = (ROOT / "recipes" / "README.md").read_text()
    models = [rc.Recipe, rc.Export, rc.Evaluate, rc.Constraints, rc.Scope, rc.LayerSelector,
              rc.PruneStep, rc.ClusterStep, rc.QuantizeStep, rc.DistillStep, rc.FinetuneStep]
    missing = sorted({f"{m.__name__}.{key}" for m in models for key in m.model_fields
                      if f"`{key}`" not in text and f"{key}:" not in text})
    assert not missing, missing
    steps = [key for key in rc.Step.model_fields]
    assert all(f"`{key}`" in text for key in steps), steps


def test_cosine_lr_schedule_decays_to_zero_over_the_step():
    from edgenn._tf import tf_keras
    from edgenn.compress.train import make_optimizer

    step = rc.FinetuneStep(learning_rate=1e-3, lr_schedule="cosine")
    config = make_optimizer(step, total_steps=100).get_config()["learning_rate"]
    lr = tf_keras().optimizers.schedules.deserialize(config)
    assert float(lr(0)) == pytest.approx(1e-3) and float(lr(50)) == pytest.approx(5e-4)
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-9)
    constant = make_optimizer(rc.FinetuneStep(learning_rate=1e-3)).get_config()["learning_rate"]
    assert constant == pytest.approx(1e-3)


def test_recipe_step_keys_are_the_registered_techniques():
    """A recipe key with no technique, or a technique no recipe can name, is caught here."""
    from edgenn.compress.registry import names
    from edgenn.recipe import Step

    assert sorted(Step.model_fields) == names()
