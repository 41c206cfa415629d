"""Reading the HTML report back (as written, or as Chromium's DOM after its scripts ran)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any


@dataclass
class Section:
    function: str
    hidden: bool
    lanes: list[str] = field(default_factory=list)
    # (kind, bar index, test) of every invocation bar, in document order.
    bars: list[tuple[str, int, str]] = field(default_factory=list)
    # test -> whether its segment is hidden (style display: none, set by the filter).
    segments: dict[str, bool] = field(default_factory=dict)
    # Tests whose segment is marked failed, and each segment's label as drawn.
    failed: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    shutdowns: list[str] = field(default_factory=list)
    # Why each "!" mark is there (its tooltip).
    flags: list[str] = field(default_factory=list)
    marks: int = 0
    # boto3 client marks (squares).
    clients: int = 0
    # Figures drawn hidden (a function with none of them).
    hidden_figures: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Page:
    sections: list[Section] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    body: dict[str, str] = field(default_factory=dict)
    # Every src/href, and the tags that could fetch something.
    references: list[str] = field(default_factory=list)
    fetching_tags: list[str] = field(default_factory=list)
    shown: str = ""

    def section(self, function: str) -> Section:
        (found,) = [s for s in self.sections if s.function == function]
        return found


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.segment: str | None = None
        self.capture: str | None = None
        self.text = ""
        self.figure: str | None = None
        self.title_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        section = self.page.sections[-1] if self.page.sections else None
        for name in ("src", "href"):
            if name in a:
                self.page.references.append(a[name])
        if tag in ("link", "iframe", "img", "object", "embed") or (tag == "script" and "src" in a):
            self.page.fetching_tags.append(tag)
        if tag == "body":
            self.page.body = a
        elif tag == "section" and "function" in a.get("class", ""):
            self.page.sections.append(Section(a["data-function"], "hidden" in a))
        elif tag == "g" and "segment" in a.get("class", "").split() and section:
            self.segment = a["data-test"]
            section.segments[self.segment] = "display: none" in a.get("style", "")
            if "failed" in a.get("class", "").split():
                section.failed.append(self.segment)
        elif tag == "text" and a.get("class") == "label" and section:
            self.capture, self.text = "label", ""
        elif tag == "g" and "inv" in a.get("class", "").split() and section:
            section.bars.append((a["data-kind"], int(a["data-b"]), self.segment or ""))
        elif tag == "circle" and "conn" in a.get("class", "") and section:
            section.marks += 1
        elif tag == "rect" and a.get("class") == "client" and section:
            section.clients += 1
        elif tag == "div" and "hidden" in a and section and not self._in_lanes:
            self.hidden_div = True
        elif tag == "text" and "shutdown" in a.get("class", "") and section:
            self.capture, self.text = "shutdown", ""
        elif tag == "text" and a.get("class") == "mark" and section:
            self.capture, self.text = "mark", ""
        elif tag == "div" and section and self.capture is None and self._in_lanes:
            self.capture, self.text = "lane", ""
        elif tag == "div" and a.get("class") == "lanes":
            self._in_lanes = True
        elif tag == "dd" and "data-figure" in a:
            self.capture, self.text, self.figure = "figure", "", a["data-figure"]
            if self.hidden_div and section:
                section.hidden_figures.append(a["data-figure"])
            self.hidden_div = False
        elif tag == "select" or tag == "select":
            self.select = a.get("id", "")
        elif tag == "option":
            self.capture, self.text = "option", ""
            self.option_value = a.get("value", "")
        elif tag == "script" and a.get("class") == "data":
            self.capture, self.text = "data", ""
        elif tag == "span" and a.get("id") == "shown":
            self.capture, self.text = "shown", ""
        elif tag == "title":
            self.title_depth += 1

    _in_lanes = False
    hidden_div = False
    select = ""
    select = ""

    def handle_endtag(self, tag: str) -> None:
        section = self.page.sections[-1] if self.page.sections else None
        if tag == "title":
            self.title_depth -= 1
        if tag == "div" and self._in_lanes and self.capture is None:
            self._in_lanes = False
        if self.capture is None:
            return
        done = {
            "shutdown": "text",
            "mark": "text",
            "lane": "div",
            "figure": "dd",
            "option": "option",
            "data": "script",
            "shown": "span",
            "label": "text",
        }[self.capture]
        if tag != done:
            return
        if self.capture == "shutdown" and section:
            section.shutdowns.append(self.text)
        elif self.capture == "mark" and section:
            section.flags.append(self.text.removesuffix("!"))
        elif self.capture == "lane" and section:
            section.lanes.append(self.text)
        elif self.capture == "figure" and section and self.figure:
            section.figures[self.figure] = self.text
        elif self.capture == "option" and self.option_value:
            chosen = self.page.tests if self.select == "test-filter" else self.page.functions
            chosen.append(self.option_value)
        elif self.capture == "data" and section:
            section.data = json.loads(self.text)
        elif self.capture == "shown":
            self.page.shown = self.text
        elif self.capture == "label" and section and self.segment:
            section.labels[self.segment] = self.text
        self.capture = None

    def handle_data(self, data: str) -> None:
        if self.capture is not None and not (
            self.capture in ("shutdown", "label") and self.title_depth
        ):
            self.text += data


def parse(text: str) -> Page:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    return parser.page
