"""Every notebook executes top to bottom (small sizes), and its .py and .ipynb are paired."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(ROOT.glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    assert path.with_suffix(".ipynb").exists(), "pair it: jupytext --to ipynb " + path.name
    nb = jupytext.read(path)
    monkeypatch.setenv("LMECH_NOTEBOOK_SIZE", "32")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "fitted slope" in outputs and "finite differences" in outputs
    paired = jupytext.read(path.with_suffix(".ipynb"))
    assert [c.source for c in paired.cells] == [c.source for c in nb.cells], (
        "re-sync: jupytext --sync " + path.name
    )
