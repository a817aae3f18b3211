"""The notebooks in ``notebooks/``: committed without outputs, and each runs top to bottom
(nbclient, the ``python3`` kernel of this interpreter's environment) with small parameters
injected after its ``parameters`` cell, in a temporary working directory, offline."""

import ast
import os
import sys

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # each notebook executed in a kernel

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NAMES = ("quickstart.ipynb", "fine_tune_your_data.ipynb")

# CI-sized values for each notebook's parameters (the defaults are a real run's).
SMALL = {
    "quickstart.ipynb": {"DATASET": "rfcn_shapes/tiny", "EPOCHS": 1},
    "fine_tune_your_data.ipynb": {
        "BASE_DATASET": "rfcn_shapes/tiny",
        "BASE_EPOCHS": 1,
        "NUM_TRAIN": 16,
        "NUM_VAL": 4,
        "NUM_TEST": 4,
        "EPOCHS": 1,
    },
}
# Cells that draw inline (matplotlib): the executed notebook must hold that many PNGs.
PICTURES = {"quickstart.ipynb": 4, "fine_tune_your_data.ipynb": 3}


def read(name):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def parameters_index(notebook):
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


def inject(notebook, values):
    """Papermill's way: a cell tagged ``injected-parameters`` right after ``parameters``."""
    index = parameters_index(notebook)
    assigned = {
        node.id
        for node in ast.walk(ast.parse(notebook.cells[index].source))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    }
    assert set(values) <= assigned, f"not parameters of the notebook: {set(values) - assigned}"
    cell = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in values.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, cell)
    return notebook


def test_the_notebook_folder_holds_exactly_these_notebooks():
    assert sorted(f for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_have_no_outputs_and_a_first_parameters_cell(name):
    notebook = read(name)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [(cell.outputs, cell.execution_count) for cell in code] == [([], None)] * len(code)
    assert notebook.cells.index(code[0]) == parameters_index(notebook)
    assert notebook.metadata.kernelspec.name == "python3"


def test_the_python3_kernel_is_this_interpreter_and_progress_redraws_there(tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import sys\nfrom rfcn_tf.progress import is_interactive\n"
                "print(sys.executable)\nprint(is_interactive(sys.stdout))"
            )
        ]
    )
    NotebookClient(
        notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    executable, interactive = notebook.cells[0].outputs[0]["text"].split()
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)
    assert interactive == "True"  # rfcn_tf.progress draws the Keras bar in a notebook


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_with_small_parameters(name, tmp_path):
    notebook = inject(read(name), SMALL[name])
    # Any cell error raises CellExecutionError with the cell and its traceback.
    NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    pictures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(pictures) == PICTURES[name]
    assert os.listdir(tmp_path)  # it wrote into its working directory, not the repository
