"""A blank lesson's given cells fail with one clear line, not a traceback (course.short_errors, installed by
course.notebook.setup); the error output itself (name, message) is unchanged, so grading is unchanged."""

from pathlib import Path

import nbformat

from course.authoring.execution import LiveKernel


def run(cells, cwd: Path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in cells]
    with LiveKernel(nb, cwd, timeout=120) as k:
        return [k.run(c, i) for i, c in enumerate(nb.cells)]


def errors(outs):
    return [o for o in outs if o.get("output_type") == "error"]


def test_stub_and_knock_on_errors_are_one_line(tmp_path):
    (tmp_path / "libmod.py").write_text("def f():\n    raise NotImplementedError('not on this device')\n")
    outs = run([
        "from course.short_errors import install\nassert install()",
        "def lora_forward(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()",
        "MiB = lora_forward(3) / 2",
        "print(MiB)",
        "class LoRALinear:\n    def forward(self, x):\n        raise NotImplementedError()\nLoRALinear().forward(1)",
        "import libmod\nlibmod.f()",
        "1 / 0",
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot(loss_curve)",
    ], tmp_path)
    stub, knock, method, lib, zero, plot = (errors(o)[0] for o in outs[2:])
    assert plot["ename"] == "NameError" and not [o for o in outs[-1] if o.get("output_type") == "display_data"]
    assert "`LoRALinear.forward` is not written yet" in method["traceback"][0]
    assert stub["ename"] == "NotImplementedError" and stub["traceback"] == [
        "NotImplementedError: `lora_forward` is not written yet — solve its exercise (the cell that says "
        "YOUR CODE HERE), then run this cell again"]
    assert knock["ename"] == "NameError" and len(knock["traceback"]) == 1
    assert "name 'MiB' is not defined" in knock["traceback"][0] and "run the cells above" in knock["traceback"][0]
    assert len("".join(lib["traceback"]).splitlines()) > 3            # a library's NotImplementedError: full
    assert zero["ename"] == "ZeroDivisionError" and len("".join(zero["traceback"]).splitlines()) > 1


def test_setup_installs_it():
    src = (Path(__file__).resolve().parents[1] / "course" / "notebook.py").read_text()
    assert "short_errors" in src
