"""Config files and --set flags: one-line errors naming file, line, key and accepted values."""

import re

import pytest

from gradviz.config import ConfigError, load, load_preset, loads, parse_set, preset_names


def test_every_preset_loads():
    for name in preset_names():
        cfg = load_preset(name)
        assert cfg.runs and cfg.description, name


def test_runs_override_the_shared_tables():
    cfg = loads('[train]\nlr = 0.1\n[[runs]]\nname = "a"\n[[runs]]\nname = "b"\ntrain = { lr = 0.5 }\n')
    assert cfg.run("a").train.lr == 0.1 and cfg.run("b").train.lr == 0.5


@pytest.mark.parametrize(
    "text, line, words",
    [
        ('[model]\ndepth = 30\nactivation = "swish"\n', 3, ["model.activation", "tanh, sigmoid, relu"]),
        ("[model]\ndepth = 500\n", 2, ["model.depth", "1 to 200"]),
        ("[train]\nlr = 0.1\nbogus = 1\n", 3, ["train.bogus", "unknown key", "optimizer"]),
        ('[train]\noptimizer = "lbfgs"\n', 2, ["sgd, momentum, rmsprop, adam"]),
        ('[model]\ndropout = 0.95\n', 2, ["0.0 to 0.9"]),
        ('[data]\nn_train = "many"\n', 2, ["expected an integer"]),
        # the norm's kind written where its switch goes: the message says which key takes it
        ('[model]\nnorm = "group"\n', 2, ["model.norm = 'group'", "true or false", "model.norm_kind = 'group'"]),
        # a run's own table is named as written (it read "model.width", the shared table's name)
        ('[[runs]]\nname = "x"\n[runs.model]\nwidth = -4\n', 4, ["runs.model.width = -4", "1 to 4096"]),
        # with several runs, the line is the offending run's (it was the first run's with the key)
        ('[[runs]]\nname = "a"\n[runs.model]\nwidth = 8\n[[runs]]\nname = "b"\n[runs.model]\nwidth = -4\n', 8, ["runs.model.width = -4"]),
        ('[[runs]]\nname = "a"\nmodel = { width = 8 }\n[[runs]]\nname = "b"\nmodel = { width = 0 }\n', 6, ["runs.model.width = 0"]),
        ('[[runs]]\nname = "a"\n[[runs]]\nname = "a"\n', 4, ["runs.name = 'a'", "unique"]),
        ('[[runs]]\nname = "a"\n[runs.train]\nlr = 1\n[[runs]]\nname = "b"\n[runs.train]\nlr = 0.1\nbogus = 2\n', 9, ["runs.train.bogus", "unknown key"]),
    ],
)
def test_errors_name_file_line_key_and_accepted_values(tmp_path, text, line, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_toml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[model]\ndepth = = 3\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value)


@pytest.mark.parametrize(
    ("setting", "shown"),
    [("train.momentum=2", "2.0"), ("train.momentum=-0.5", "-0.5"), ("train.weight_decay=-1", "-1.0"),
     ("train.lr_decay=-1", "-1.0"), ("data.noise=-1", "-1.0"), ("data.resize=-1", "-1")],
)
def test_settings_that_trained_on_without_a_word_are_refused(setting, shown, tmp_path):
    """A negative weight decay, decay rate or noise, a negative resize, momentum >= 1: each ran
    (or diverged) silently. Each is refused in one line with its accepted range, by --set and in a
    TOML file (with its line)."""
    key, value = setting.split("=")
    with pytest.raises(ConfigError, match=rf"^--set {re.escape(key)} = {re.escape(shown)}: accepted range is "):
        load_preset("demo").with_overrides(parse_set([setting]))
    section, name = key.split(".")
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\n\n[{section}]\n{name} = {value}\n\n[[runs]]\nname = "a"\n')
    with pytest.raises(ConfigError, match="accepted range") as info:
        load(path)
    assert str(info.value).startswith(f"{path}:4: {key} = {shown}: accepted range is ")
    ok = load_preset("demo").with_overrides(parse_set([f"{key}=0"]))  # the bound itself is fine
    assert getattr(getattr(ok.runs[0], section), name) == 0


@pytest.mark.parametrize(("key", "bad", "least"), [("data.classes", 1, 2), ("data.n_train", 0, 1), ("data.n_test", 0, 1)])
def test_data_sizes_are_checked_with_the_config(key, bad, least, tmp_path):
    """A spiral of one class or an empty split stopped only when the data set was built, in a
    line without the file, line or key ("spiral needs at least 2 classes, got 1"). The config
    refuses them now, like every other range, and takes the least value that works."""
    section, name = key.split(".")
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\n\n[{section}]\n{name} = {bad}\n\n[[runs]]\nname = "a"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}:4: {key} = {bad}: accepted range is {least} to ")
    with pytest.raises(ConfigError, match=rf"^--set {re.escape(key)} = {bad}: accepted range is {least} to "):
        load_preset("demo").with_overrides(parse_set([f"{key}={bad}"]))
    ok = load_preset("demo").with_overrides(parse_set([f"{key}={least}"]))
    assert getattr(ok.runs[0].data, name) == least


def test_set_flags():
    cfg = load_preset("demo").with_overrides(parse_set(["model.depth=12", "train.optimizer=adam"]))
    assert all(r.model.depth == 12 and r.train.optimizer == "adam" for r in cfg.runs)
    assert cfg.run("residual").model.residual is True  # per-run settings survive
    with pytest.raises(ConfigError, match="--set model.depth"):
        load_preset("demo").with_overrides(parse_set(["model.depth=0"]))
    with pytest.raises(ConfigError, match="unknown key"):
        load_preset("demo").with_overrides(parse_set(["nothing=1"]))
    with pytest.raises(ConfigError, match=r"^--set plain\.train\.lr = -1\.0: accepted range"):
        load_preset("demo").with_overrides(parse_set(["plain.train.lr=-1"]))
    one = load_preset("demo").with_overrides(parse_set(["plain.train.lr=0.5"]))
    assert one.run("plain").train.lr == 0.5 and one.run("residual").train.lr == 0.01
    with pytest.raises(ConfigError, match="with a run of plain, residual"):
        load_preset("demo").with_overrides(parse_set(["nobody.train.lr=0.5"]))
    with pytest.raises(ConfigError, match="unknown preset 'nope'; accepted values are"):
        load_preset("nope")


def test_the_folder_data_sets_are_the_loaders_ones():
    """The window asks for a data folder for these (the config module names them without torch)."""
    from gradviz.config import FOLDER_DATASETS
    from gradviz.core.data import DATASETS, SYNTHETIC

    assert set(FOLDER_DATASETS) == set(DATASETS) - set(SYNTHETIC)
