"""notebooks/component_relations.ipynb runs end to end on a tiny synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "component_relations.ipynb"
MODELS = ["dere-grl", "mmt", "mubert", "hsta"]


def test_notebook_is_stored_without_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1


@pytest.mark.slow
def test_notebook_trains_compares_and_tables_every_model(tmp_path, monkeypatch):
    import nbformat
    import pandas as pd
    from nbclient import NotebookClient

    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))  # the kernel inherits it
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # papermill-style: a cell after the one tagged "parameters" overrides the defaults
    position = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    out = tmp_path / "runs"
    notebook.cells.insert(position + 1, nbformat.v4.new_code_cell(
        f"EPOCHS = 2\nSEEDS = (0,)\nSYNTH = dict(subjects=3, clips=4, fps=60)\nOUT = Path({str(out)!r})"
    ))
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    table = pd.read_csv(out / "agreement.csv")
    assert list(table["model"]) == MODELS
    # per model: UF1, agreement with the relevance ground truth, the baseline's agreement, faithfulness
    for column in ("intrinsic vs truth", "occlusion vs truth", "baseline vs truth", "motion_relations vs truth",
                   "faithfulness"):
        assert table[column].between(-1, 1).all(), column
    assert table["UF1"].between(0, 1).all() and table["occlusion p"].between(0, 1).all()
    # the occlusion agreement's subject-bootstrap interval has its columns; 3 subjects are too few for one
    assert table[["occlusion 95% low", "occlusion 95% high"]].isna().all().all()
    assert table["baseline vs truth"].nunique() == 1  # one dataset, one baseline, shown beside every model
    last = notebook.cells[-1]
    assert last.outputs and "text/plain" in last.outputs[0]["data"]
    shown = last.outputs[0]["data"]["text/plain"]
    assert all(model in shown for model in MODELS)
    figures = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 3  # relation panel, graph on the face, motion arrows
    assert all((out / model / "occlusion_relations.npy").is_file() for model in MODELS)
    _assert_table_matches_the_runs(table, out)


def _assert_table_matches_the_runs(table, out: Path) -> None:
    """Each model's row equals metrics.json's UF1, ground_truth_agreement and faithfulness of its run folder."""
    import numpy as np

    from geomer.relations import faithfulness, ground_truth_agreement, load_run_relations, synthetic_ground_truth
    from geomer.rundir import load_run

    for row in table.to_dict("records"):
        run = load_run(out / row["model"])
        kinds = load_run_relations(run.path, list(run.classes), run.num_components)
        agreement = ground_truth_agreement(kinds, list(run.classes), synthetic_ground_truth(run), permutations=10,
                                           run=run).set_index("relation")["spearman"]
        faithful = faithfulness(kinds["intrinsic"], kinds["occlusion"], list(run.classes))
        expected = {"UF1": run.metrics["uf1"], "intrinsic vs truth": agreement["intrinsic"],
                    "occlusion vs truth": agreement["occlusion"],
                    "baseline vs truth": agreement["input-only baseline"],
                    "motion_relations vs truth": agreement["motion_relations (ground truth)"],
                    "faithfulness": np.nanmean(list(faithful.values()))}
        for column, value in expected.items():
            assert row[column] == pytest.approx(value, nan_ok=True), (row["model"], column)
