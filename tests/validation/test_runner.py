"""The experiment protocol (`run_experiment`) and whole-report writing, on a tiny fake experiment."""

import json
import os
import stat
import types

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lmech.validation.experiments import run_experiment
from lmech.validation.report import Report, read_results


def test_run_experiment_assembles_a_report_that_round_trips(tmp_path, fake_experiment):
    mod = fake_experiment()
    report = run_experiment(mod, mod.Config(a=2.0), progress=False)
    assert report.name == "fake" and report.config["a"] == 2.0
    assert report.config["dtype"] == "float64"  # tests run in x64 (conftest)
    assert report.metrics["wall_time_s"] >= 0
    folder = report.write(tmp_path)
    back = read_results(folder)
    assert back["metrics"]["final"] == pytest.approx(np.exp(-2.0), rel=1e-15)
    np.testing.assert_allclose(back["curves"]["y"], np.exp(-2.0 * np.linspace(0, 1, 11)), rtol=1e-15)
    assert np.isinf(back["curves"]["t_never"][0])  # curves may hold inf (never reached), metrics not
    figs = mod.figures(back)  # the figures can be redrawn from the written report alone
    assert set(figs) == {"decay"}
    assert (folder / "decay.png").stat().st_size > 1000
    assert "final value" in (folder / "summary.md").read_text()
    plt.close("all")


def test_run_experiment_rejects_bad_modules_and_configs(fake_experiment):
    mod = fake_experiment()
    with pytest.raises(TypeError, match="Config"):
        run_experiment(mod, {"seed": 0})
    broken = fake_experiment()
    broken.compute = lambda config, progress=True: {"metrics": {}}
    with pytest.raises(TypeError, match="'metrics' and 'curves'"):
        run_experiment(broken, broken.Config(), progress=False)
    with pytest.raises(TypeError, match="NAME"):
        run_experiment(types.ModuleType("nothing"), mod.Config())


def _mode_expected(kind):
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if kind == "dir" else 0o666) & ~mask


def test_report_files_have_ordinary_modes(tmp_path, fake_experiment):
    mod = fake_experiment()
    folder = run_experiment(mod, mod.Config(), progress=False).write(tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == _mode_expected("dir")
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == _mode_expected("file"), f.name
    plt.close("all")


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "", ".hidden", "a\\b", "x\0y"])
def test_report_name_must_stay_inside_out(name, tmp_path):
    with pytest.raises(ValueError, match="single plain file name"):
        Report(name, {}, {})
    rep = Report("ok", {}, {})
    rep.name = name  # changed after construction: checked again when writing
    with pytest.raises(ValueError, match="single plain file name"):
        rep.write(tmp_path / "out")
    assert not (tmp_path / "x").exists()


def test_a_failed_write_leaves_the_previous_report_whole(tmp_path):
    fig, _ = plt.subplots()
    Report("demo", {"seed": 0}, {"v": 0.0}, "seed 0", {"f": fig}, {"c": np.zeros(3)}).write(tmp_path)

    class Boom:
        def savefig(self, *a, **k):
            raise KeyboardInterrupt  # an interrupt between the files of the new report

    bad = Report("demo", {"seed": 1}, {"v": 1.0}, "seed 1", {"f": fig, "g": Boom()}, {"c": np.ones(3)})
    with pytest.raises(KeyboardInterrupt):
        bad.write(tmp_path)
    back = read_results(tmp_path / "demo")
    assert back["config"]["seed"] == 0 and back["metrics"]["v"] == 0.0
    np.testing.assert_array_equal(back["curves"]["c"], np.zeros(3))
    assert "seed 0" in (tmp_path / "demo" / "summary.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary folder left
    # NaN metrics are refused before anything is written
    with pytest.raises(ValueError, match="NaN"):
        Report("demo", {"seed": 2}, {"v": float("nan")}).write(tmp_path)
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["config"]["seed"] == 0
    # a successful write replaces the whole folder: files of the old report do not survive
    Report("demo", {"seed": 3}, {"v": 3.0}, "seed 3").write(tmp_path)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["metrics.json", "summary.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    plt.close("all")


def test_report_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "demo").write_text("not a report")
    with pytest.raises(ValueError, match="not a folder"):
        Report("demo", {}, {}).write(tmp_path)
    assert (tmp_path / "demo").read_text() == "not a report"


@pytest.mark.parametrize("atomic_exchange", [True, False])
def test_replacing_a_report_swaps_whole_folders(tmp_path, monkeypatch, atomic_exchange):
    """With the OS's atomic exchange, and with the rename-away fallback."""
    from lmech.validation import report as report_module

    if not atomic_exchange:
        monkeypatch.setattr(report_module, "_exchange", lambda a, b: False)
    Report("demo", {"seed": 0}, {"v": 0.0}, curves={"old_only": np.zeros(2)}).write(tmp_path)
    Report("demo", {"seed": 1}, {"v": 1.0}).write(tmp_path)
    back = read_results(tmp_path / "demo")
    assert back["config"]["seed"] == 1 and back["curves"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
