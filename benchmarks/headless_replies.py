"""How often does a headless run wait for a cell's reply it already has? Stock papermill and svdkit.headless,
side by side in one run.

    python benchmarks/headless_replies.py                 # 4 rounds of 40 cells each way
    python benchmarks/headless_replies.py --rounds 2 --cells 20
    python benchmarks/headless_replies.py --write         # also append the results to benchmarks/RESULTS.md

Each round runs two small notebooks, each way: 40 cells that show a widget and write a figure into an
`ipywidgets.Output`, and 40 cells that show the same widget and figure without the Output. For every cell it
takes the time from the kernel's reply (`shell.execute_reply`, stamped by the kernel) to the end of the cell as
papermill records it. A reply is *late* when that is over 1 s: the client had the reply and did not read it.
Stock papermill runs with a 3 s cell limit, so a reply it misses is read when that limit ends (a cell limit
only ends the wait: it fails no cell that finished); without any limit it would wait forever. Target: no late
reply through svdkit.headless.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from svdkit.cli_args import count
from svdkit.headless import reply_waits, run_notebook

STOCK_LIMIT = 3.0  # seconds; stock papermill reads a missed reply when this ends
LATE = 1.0         # seconds from the kernel's reply to the cell's end


def build(path: Path, cells: int, output_widget: bool) -> Path:
    """A notebook of `cells` cells, each showing a Text widget and a random figure, inside an Output or not."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(
        "import ipywidgets as w, numpy as np\nimport matplotlib.pyplot as plt\nfrom IPython.display import display"))
    for i in range(cells):
        show = (f"fig, ax = plt.subplots(figsize=(8, 2))\nax.imshow(np.random.rand(32, 256))\n"
                f"print('cell {i}')\ndisplay(fig)\nplt.close(fig)")
        if output_widget:
            body = "box = w.Output()\ndisplay(w.VBox([w.Text('x'), box]))\nwith box:\n    box.clear_output(wait=True)\n"
            body += "\n".join("    " + line for line in show.splitlines())
        else:
            body = "display(w.Text('x'))\n" + show
        nb.cells.append(nbformat.v4.new_code_cell(body))
    nbformat.write(nb, path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=count(1), default=4)
    p.add_argument("--cells", type=count(1), default=40)
    p.add_argument("--write", action="store_true", help="also append the results to benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    import papermill

    tmp = Path(tempfile.mkdtemp(prefix="headless_replies_"))
    books = {kind: build(tmp / f"{kind}.ipynb", args.cells, kind == "output") for kind in ("output", "plain")}
    late = {(way, kind): 0 for way in ("stock", "svdkit") for kind in books}
    seconds = dict.fromkeys(late, 0.0)
    worst = dict.fromkeys(late, 0.0)
    for r in range(args.rounds):
        for kind, book in books.items():
            for way in ("stock", "svdkit"):  # alternate, so both see the same machine load
                out = tmp / f"{way}_{kind}_{r}.ipynb"
                started = time.perf_counter()
                if way == "stock":
                    papermill.execute_notebook(str(book), str(out), kernel_name="python3", progress_bar=False,
                                               execution_timeout=STOCK_LIMIT)
                else:
                    run_notebook(book, out, cell_timeout=60, progress_bar=False)
                seconds[way, kind] += time.perf_counter() - started
                waits = reply_waits(out)[1:]  # after the imports cell
                late[way, kind] += sum(w > LATE for w in waits)
                worst[way, kind] = max(worst[way, kind], max(waits))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    n = args.rounds * args.cells
    lines = [f"cells whose reply was read more than {LATE:g} s after the kernel sent it ({n} cells each):",
             f"{'':34s}{'stock papermill':>18s}{'svdkit.headless':>18s}"]
    for kind, label in (("output", "writing into an Output widget"), ("plain", "showing a widget, no Output")):
        cols = [f"{late[w, kind]:3d} ({worst[w, kind]:4.2f} s worst)" for w in ("stock", "svdkit")]
        lines.append(f"{label:34s}{cols[0]:>18s}{cols[1]:>18s}")
    for kind in books:
        lines.append(f"total time, {kind:6s} notebooks: stock {seconds['stock', kind]:6.1f} s, svdkit "
                     f"{seconds['svdkit', kind]:6.1f} s, ratio {seconds['svdkit', kind] / seconds['stock', kind]:.2f}")
    ok = late["svdkit", "output"] == 0 and late["svdkit", "plain"] == 0
    lines.append(f"target: no late reply through svdkit.headless: {'passes' if ok else 'FAILS'}")
    print("\n" + "\n".join(lines))
    if args.write:
        from report import append_results  # benchmarks/report.py, beside this script
        append_results("headless_replies: late kernel replies, stock papermill and svdkit.headless", lines)
        print("appended to benchmarks/RESULTS.md")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
