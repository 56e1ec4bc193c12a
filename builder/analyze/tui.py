"""`pybuild analyze IMAGE` on a terminal: dive's layer explorer, on Textual.

Left: the layers (index, content size, instruction) and the selected layer's figures. Right: the
image's file tree as of the selected layer, each entry marked A (added), M (modified), D
(removed) in the letter and a colour, W when a later layer re-writes or removes it (wasted bytes),
with summed sizes per directory. Layers stream in one at a time: the first screen shows as soon
as layer 0 is read. The only module that imports Textual (no other command pays for it).
"""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.message import Message
from textual.screen import ModalScreen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from builder.analyze.explore import ALL, CHANGES, CUMULATIVE, Explorer, Loading, PathNode
from builder.analyze.report import human_size
from builder.errors import BuildError

MARK_STYLE = {"A": Style(color="green", bold=True), "M": Style(color="yellow", bold=True),
              "D": Style(color="red", bold=True)}
WASTE_STYLE = Style(color="magenta", bold=True)
FILTERS = {ALL: "whole tree", CHANGES: "changes of this layer", CUMULATIVE: "changes since the base layer"}
HELP = """\
pybuild analyze: the layer explorer

  Tab, Shift+Tab  layer list <-> tree       [ ]  previous / next layer
  Up/Down, j/k    move (in the layer list: choose the layer)
  PgUp/PgDn, Home/End                       q    quit
  Space, Enter    open or close a directory (or click it twice)
  Right / Left    open / close (or go to the parent)
  o / O           open every directory / close them all
  f               filter: whole tree -> changes of this layer
                  -> changes since the base layer (layer 0)
  /               search paths (Enter: to the tree, Esc: clear)

A added   M modified (content, kind, link, mode or owner)   D removed
W wasted: a later layer re-writes or removes this file, its bytes stay
Sizes are files' bytes; a directory's is the sum below it at this layer.
"""


class FileTree(ScrollView, can_focus=True):
    """The flattened tree as of a layer: one row per shown entry, rendered line by line."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "up", show=False), Binding("down,j", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", show=False), Binding("pagedown", "page(1)", show=False),
        Binding("home", "edge(0)", show=False), Binding("end", "edge(1)", show=False),
        Binding("space,enter", "open_close", "open/close", show=False),
        Binding("right,l", "open", show=False), Binding("left,h", "close", show=False),
    ]
    DEFAULT_CSS = "FileTree { height: 1fr; } FileTree:focus { background: $boost; }"

    class Moved(Message):
        """The cursor is on another entry."""

    def __init__(self, model: Explorer, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.at, self.view, self.only_changes, self.pattern = 0, ALL, False, ""
        self.expanded: set[PathNode] = set()
        self.rows: list[tuple[PathNode, int]] = []
        self.cursor = 0

    # -- state ---------------------------------------------------------------------------------

    def rebuild(self, keep: PathNode | None = None) -> None:
        """Recompute the rows (after a layer, filter, search or open/close change)."""
        keep = keep or self.current
        with self.model.lock:
            self.rows = self.model.rows(self.at, self.view, only_changes=self.only_changes,
                                        expanded=self.expanded, query=self.pattern)
        index = {id(n): i for i, (n, _) in enumerate(self.rows)} if keep is not None else {}
        self.cursor = index.get(id(keep), min(self.cursor, max(len(self.rows) - 1, 0)))
        self.virtual_size = Size(self.size.width, len(self.rows))
        self._follow()
        self.refresh()
        self.post_message(self.Moved())

    @property
    def current(self) -> PathNode | None:
        return self.rows[self.cursor][0] if 0 <= self.cursor < len(self.rows) else None

    def _follow(self) -> None:
        top, height = self.scroll_offset.y, max(self.size.height, 1)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)

    def _set_cursor(self, row: int) -> None:
        row = max(0, min(row, len(self.rows) - 1))
        if row != self.cursor:
            old, self.cursor = self.cursor, row
            self._follow()
            top = self.scroll_offset.y
            self.refresh_lines(old - top)
            self.refresh_lines(row - top)
            self.post_message(self.Moved())

    # -- actions -------------------------------------------------------------------------------

    def action_move(self, step: int) -> None:
        self._set_cursor(self.cursor + step)

    def action_page(self, step: int) -> None:
        self._set_cursor(self.cursor + step * max(self.size.height - 1, 1))

    def action_edge(self, end: int) -> None:
        self._set_cursor(len(self.rows) - 1 if end else 0)

    def action_open_close(self) -> None:
        node = self.current
        if node is not None and node.children:
            self.expanded.symmetric_difference_update({node})
            self.rebuild(node)

    def action_open(self) -> None:
        node = self.current
        if node is not None and node.children and node not in self.expanded:
            self.action_open_close()

    def action_close(self) -> None:
        node = self.current
        if node is None:
            return
        if node in self.expanded:
            self.action_open_close()
        elif node.parent is not None and node.parent.parent is not None:
            self.rebuild(node.parent)

    def open_all(self, everything: bool) -> None:
        self.expanded = {n for _, n in self.model.paths() if n.children} if everything else set()
        self.rebuild()

    # -- mouse ---------------------------------------------------------------------------------

    def on_mouse_down(self, event: events.MouseDown) -> None:
        """A press selects the entry under the pointer; on the selected one, opens or closes it."""
        row = self.scroll_offset.y + event.y
        if 0 <= row < len(self.rows):
            if row == self.cursor:
                self.action_open_close()
            else:
                self._set_cursor(row)

    # -- drawing -------------------------------------------------------------------------------

    def _styles(self, cursor: bool) -> dict[str, Style]:
        """The styles of a row (plain or under the cursor), made once per look of the widget."""
        key = (cursor, self.has_focus, id(self.rich_style))
        cache = self.__dict__.setdefault("_style_cache", {})
        if key not in cache:
            base = self.rich_style
            if cursor:
                base = base + (Style(reverse=True) if self.has_focus else Style(underline=True))
            cache.clear() if len(cache) > 8 else None
            cache[key] = {"": base, "dir": base + Style(bold=True), "W": base + WASTE_STYLE,
                          **{m: base + st for m, st in MARK_STYLE.items()}}
        return cache[key]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        row = self.scroll_offset.y + y
        if row >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        node, depth = self.rows[row]
        layer = self.at
        mark = self.model.view_mark(node, layer, self.view) or ""
        wasted = node.wasted(layer)
        is_dir = node.is_dir(layer)
        size = node.size(layer if mark != "D" else layer - 1)
        if is_dir:
            opener = "▾ " if node in self.expanded or self.pattern else "▸ " if node.children else "  "
        else:
            opener = "  "
        name = node.name + ("/" if is_dir else "")
        st = node.state(layer)
        if st is not None and st[3]:
            name += f" -> {st[3]}"
        styles = self._styles(row == self.cursor)
        base = styles[""]
        lead = f" {human_size(size):>8}  {'  ' * depth}{opener}"
        used = 3 + len(lead) + len(name)
        segments = [
            Segment(mark or " ", styles[mark]),
            Segment(" ", base),
            Segment("W" if wasted else " ", styles["W"] if wasted else base),
            Segment(lead, base),
            Segment(name, styles[mark] if mark else styles["dir"] if is_dir else base),
        ]
        x = self.scroll_offset.x
        if used < width + x:
            segments.append(Segment(" " * (width + x - used), base))
        strip = Strip(segments)
        return strip.crop(x, x + width) if x or used > width else strip


class Line(Widget):
    """Text of a fixed height that repaints when it changes, without a new layout (Static.update
    lays the whole screen out again: tens of milliseconds on every keypress)."""

    def __init__(self, text: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = text

    def set(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.refresh()

    def render(self) -> Text:
        return Text(self._text, no_wrap=True, overflow="ellipsis")


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "close")]
    DEFAULT_CSS = "Help { align: center middle; } Help > Static { width: auto; max-width: 90%; " \
                  "border: round $accent; padding: 0 1; background: $panel; }"

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help", markup=False)


class ExplorerApp(App[int]):
    """The explorer over a model that a background thread fills layer by layer."""

    TITLE = "pybuild analyze"
    CSS = """
    Screen { layout: vertical; }
    #main { height: 1fr; }
    #left { width: 40%; min-width: 28; }
    #layers { height: 1fr; border: none; padding: 0; }
    #layer-info { height: 4; color: $text-muted; }
    .title { background: $primary-background; text-style: bold; height: 1; }
    #right { width: 1fr; }
    #search { height: 1; border: none; padding: 0 1; }
    #details { height: 1; background: $panel; }
    #keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"), Binding("question_mark", "help", "help"),
        Binding("f", "filter", "filter"), Binding("slash", "search", "search"),
        Binding("left_square_bracket", "layer(-1)", "previous layer", show=False),
        Binding("right_square_bracket", "layer(1)", "next layer", show=False),
        Binding("o", "open_all(1)", show=False), Binding("O", "open_all(0)", show=False),
        Binding("escape", "clear_search", show=False),
    ]

    def __init__(self, model: Explorer, label: str, loading: Loading | None = None, start: int = 0,
                 only_changes: bool = False, steps: dict[str, str] | None = None) -> None:
        super().__init__()
        self.steps = steps or {}  # diff_id -> the build step that made the layer (from build records)
        self.model, self.label, self.loading = model, label, loading
        self.total = loading.total if loading else len(model.layers)
        self.start, self.only_changes = start, only_changes
        self.error: BaseException | None = None
        self.files = FileTree(model, id="tree")
        self.shown_layers = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Line("Layers", classes="title", id="layers-title")
                yield OptionList(id="layers")
                yield Line("", id="layer-info")
            with Vertical(id="right"):
                yield Line("", classes="title", id="tree-title")
                yield self.files
                yield Input(placeholder="/ search paths (Enter: back to the tree, Esc: clear)", id="search")
        yield Line("", id="details")
        yield Static("q quit  ? help  Tab switch  [ ] layer  Space open  f filter  / search  o/O open/close all",
                     id="keys", markup=False)

    def on_mount(self) -> None:
        self.query_one("#tree-title", Line).set(f"{self.label}: reading the layers ...")
        self._poll()
        if self.loading is not None and not self.loading.done:
            self._timer = self.set_interval(0.03, self._poll)

    def _poll(self) -> None:
        """Show the layers read since the last look; stop at the end, or on a reading error."""
        while self.shown_layers < len(self.model.layers):
            self._layer_loaded(self.shown_layers)
            self.shown_layers += 1
        loading = self.loading
        if loading is not None and loading.done:
            if getattr(self, "_timer", None) is not None:
                self._timer.stop()
            if loading.error is not None:
                self.error = loading.error
                self.exit(1 if isinstance(loading.error, BuildError) else 70)

    # -- layers --------------------------------------------------------------------------------

    def _layer_loaded(self, index: int) -> None:
        info = self.model.layers[index]
        layers = self.query_one("#layers", OptionList)
        prompt = Text.assemble((f"{info.index:>2} ", "bold"), f"{human_size(info.content_size):>8}  ",
                               " ".join((info.created_by or "-").split()), no_wrap=True, overflow="ellipsis")
        prompt.truncate(max((layers.size.width or 40) - 2, 20), overflow="ellipsis")  # one line per layer
        layers.add_option(Option(prompt, id=f"layer-{index}"))
        if index == min(self.start, (self.total or len(self.model.layers)) - 1):
            self.files.at, self.files.only_changes = index, self.only_changes
            self.files.view = CHANGES if self.only_changes else ALL
            layers.highlighted = index
            self.files.rebuild()
            self.files.focus()
        self._titles()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_index != self.files.at and event.option_index < len(self.model.layers):
            self.files.at = event.option_index
            self.files.rebuild()
            self._titles()

    def action_layer(self, step: int) -> None:
        layers = self.query_one("#layers", OptionList)
        current = layers.highlighted if layers.highlighted is not None else self.files.at
        layers.highlighted = max(0, min(current + step, len(self.model.layers) - 1))

    def _titles(self) -> None:
        t = self.files
        loaded = len(self.model.layers)
        total = f"{loaded}/{self.total}" if self.total and loaded < self.total else str(loaded)
        self.query_one("#layers-title", Line).set(f"Layers ({total})")
        view = FILTERS[t.view if t.only_changes else ALL]
        search = f"  search: {t.pattern}" if t.pattern else ""
        self.query_one("#tree-title", Line).set(
            f"Layer {t.at}: {view}{search}  ({len(t.rows)} rows)")
        if loaded:
            i = self.model.layers[t.at]
            wasted = self.model.wasted_bytes[t.at]
            self.query_one("#layer-info", Line).set(
                f"layer {i.index}  {i.digest[:19] or i.diff_id[:19]}\n"
                f"content {human_size(i.content_size)}  tar {human_size(i.tar_size)}\n"
                f"A {i.added}  M {i.modified}  D {i.removed}  wasted later {human_size(wasted)}\n"
                f"{('step ' + self.steps[i.diff_id]) if i.diff_id in self.steps else i.created_by or '-'}")

    # -- tree ----------------------------------------------------------------------------------

    def on_file_tree_moved(self, _: FileTree.Moved) -> None:
        node = self.files.current
        self.query_one("#details", Line).set(self.model.details(node, self.files.at) if node else "")
        self._titles()

    def action_filter(self) -> None:
        t = self.files
        if not t.only_changes:
            t.only_changes, t.view = True, CHANGES
        elif t.view == CHANGES:
            t.view = CUMULATIVE
        else:
            t.only_changes, t.view = False, ALL
        t.rebuild()
        self._titles()  # now, in the same frame as the tree (the Moved message would repaint it a frame later)

    def action_open_all(self, everything: int) -> None:
        self.files.open_all(bool(everything))

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.files.pattern = event.value.strip()
        self.files.rebuild()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.files.focus()

    def action_clear_search(self) -> None:
        box = self.query_one("#search", Input)
        if box.value or box.has_focus:
            box.value = ""
            self.files.focus()

    def action_help(self) -> None:
        self.push_screen(Help())


def run_explorer(loading: Loading, label: str, steps: dict[str, str] | None = None) -> int:
    """Open the explorer on a terminal over layers being read (`Loading.start()` before this);
    `steps` names the build step of each layer (diff_id -> text)."""
    app = ExplorerApp(loading.model, label, loading, steps=steps)
    try:
        code = app.run()
    finally:
        loading.stop = True
    if app.error is not None:
        raise app.error
    return code or 0


def run_model(model: Explorer, label: str) -> int:
    """Open the explorer on a model already read (`pybuild diff --tui`: A's filesystem, then B's),
    on its last layer's changes."""
    app = ExplorerApp(model, label, start=len(model.layers) - 1, only_changes=True)
    return app.run() or 0
