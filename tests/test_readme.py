"""The README's links into the source point at what they name, so "Backprop in forty lines" stays true."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[`([^`]+)`\]\((tinygrad_sm/\w+\.py)#L(\d+)-L(\d+)\)")


def test_each_line_link_spans_the_definition_it_names():
    links = LINK.findall((ROOT / "README.md").read_text())
    assert len(links) >= 4
    for text, path, start, end in links:
        name = re.match(r"[\w.]+", text).group(0).split(".")[-1]
        lines = (ROOT / path).read_text().splitlines()[int(start) - 1:int(end)]
        head = "\n".join(lines[:2])
        assert re.search(rf"(def|class) {name}\b", head), f"{path}#L{start} does not start at {name}: {head!r}"
        following = (ROOT / path).read_text().splitlines()[int(end):int(end) + 1]
        assert not following or not following[0].startswith("        "), f"{path}#L{end} cuts {name} short"
