"""``bmbench classes``: the 21 class codes with their names and images per class of every data set."""

from __future__ import annotations

from pathlib import Path

from bmbench.cli.common import check_json_out, emit_json, human_console, json_option, user_errors


@user_errors
def classes(json_out: Path | None = json_option("Also write the table (JSON) to")) -> None:
    """The 21 classes in index order (the order of the p_* columns): code, name, images per data set.

    Counts are read from the published split files (hash-checked); SYNTHETIC is the embedded demo set.
    """
    from rich.table import Table

    from bmbench.splits.counts import class_table

    check_json_out(json_out)
    doc = class_table()
    out = human_console(json_out)
    table = Table(title="The 21 classes (index order = p_* column order)", title_justify="left",
                  caption="images per class counted from the split files "
                  + ", ".join(d["split"] for d in doc["datasets"]), caption_justify="left")
    for column in ("#", "code", "name"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for d in doc["datasets"]:
        table.add_column(d["id"].upper() if d["synthetic"] else d["id"], justify="right")
    for c in doc["classes"]:
        table.add_row(str(c["index"]), c["code"], c["name"], *(f"{c['images'][d['id']]:,}" for d in doc["datasets"]))
    table.add_row("", "", "total", *(f"{d['total']:,}" for d in doc["datasets"]))
    out.print(table)
    for d in doc["datasets"]:
        if not d["matches_expected"]:
            out.print(f"[yellow]warning: split {d['split']} does not hold the expected images per class of data set "
                      f"{d['id']} (resources/bm_classes.csv)[/]", highlight=False)
    emit_json(json_out, doc)
