"""Figures and tables for the walkthrough notebooks: roles over time, message sequence
diagrams, logs as grids of terms, client histories, CDFs.

Every function returns a ``matplotlib.figure.Figure`` made without pyplot, so
a notebook shows it by ending a cell with it (after ``%matplotlib inline``)
and a script can ``fig.savefig(path)``; nothing is shown twice or left open.
``Table`` renders rows as an HTML table in a notebook and as text elsewhere.
Every figure has a title, labelled axes and a legend where there is more
than one kind of mark (the notebooks' house rule).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from kv.raft import Message, MessageType
from sim.check.result import CheckResult
from sim.history import Operation, OpKind, Status, describe_call
from sim.walkthrough import DOWN, RaftWorld

ROLE_COLOURS = {
    "follower": "#c6dbef",
    "pre-candidate": "#fdd0a2",
    "candidate": "#fd8d3c",
    "leader": "#238b45",
    DOWN: "#525252",
}
NOTE_COLOURS = {"crash": "#d62728", "restart": "#2ca02c", "partition": "#9467bd", "heal": "#1f77b4",
                "propose": "#8c564b", "note": "#7f7f7f"}
# Terms 1..10 get distinct colours (tab10), as the paper's figures colour entries by term.
TERM_COLOURS = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
                "#9edae5", "#c7c7c7"]
SHADE_COLOURS = ["#fcbba1", "#fee391", "#c7e9c0", "#d0d1e6", "#fde0ef", "#e5f5e0"]
OP_COLOURS = {OpKind.GET: "#1f77b4", OpKind.PUT: "#ff7f0e", OpKind.CAS: "#2ca02c", OpKind.DELETE: "#9467bd",
              OpKind.TXN: "#8c564b"}


class Table:
    """Rows with a header: an HTML table in a notebook, aligned text in a terminal."""

    def __init__(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> None:
        self.headers = list(headers)
        self.rows = [list(r) for r in rows]
        self.caption = caption

    @staticmethod
    def _cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
        return str(v)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._cell(v))}</td>" for v in row) + "</tr>" for row in self.rows
        )
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        cells = [self.headers] + [[self._cell(v) for v in r] for r in self.rows]
        widths = [max(len(r[k]) for r in cells) for k in range(len(self.headers))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return (self.caption + "\n" if self.caption else "") + "\n".join(lines)


def _scale(unit: str) -> float:
    return {"s": 1.0, "ms": 1000.0}[unit]


# ---------------------------------------------------------------- roles and terms


def role_timeline(world: RaftWorld, start: float = 0.0, end: float | None = None, *, unit: str = "ms",
                  title: str = "Roles over time", terms: bool = True) -> Figure:
    """One band per node coloured by its role (term written on leader bands), the world's
    notes (crashes, partitions, ...) as vertical lines; below, each node's term if `terms`."""
    end = world.now if end is None else end
    k = _scale(unit)
    ids = list(world.ids)
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(ids) + (2.4 if terms else 0)), layout="constrained")
    if terms:
        ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [len(ids), 3]})
    else:
        ax, ax2 = fig.subplots(), None
    shown: set[str] = set()
    for row, i in enumerate(ids):
        changes = [r for r in world.roles if r.node == i]
        for n, r in enumerate(changes):
            t0 = max(r.time, start)
            t1 = min(changes[n + 1].time if n + 1 < len(changes) else end, end)
            if t1 <= t0:
                continue
            ax.broken_barh([(t0 * k, (t1 - t0) * k)], (row - 0.38, 0.76), color=ROLE_COLOURS[r.role], lw=0)
            shown.add(r.role)
            if r.role == "leader" and (t1 - t0) > (end - start) / 25:
                ax.text((t0 + t1) / 2 * k, row, f"leader, term {r.term}", ha="center", va="center", fontsize=8,
                        color="white")
    kinds = _draw_notes([a for a in (ax, ax2) if a is not None], world, start, end, k)
    ax.set_yticks(range(len(ids)), [f"n{i}" for i in ids])
    ax.set_ylim(len(ids) - 0.5, -0.5)
    ax.set_ylabel("node")
    ax.set_title(title)
    handles: list[Any] = [Patch(color=c, label=r) for r, c in ROLE_COLOURS.items() if r in shown]
    handles += [Line2D([], [], color=NOTE_COLOURS[kd], ls="--", label=kd) for kd in kinds]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="role / event")
    if ax2 is not None:
        for i in ids:
            # NaN while the node is down: the line stops at a crash and resumes at the restart.
            pts = [(r.time, float("nan") if r.role == DOWN else r.term) for r in world.roles
                   if r.node == i and r.time <= end]
            before = [p for p in pts if p[0] <= start]
            pts = ([(start, before[-1][1])] if before else []) + [p for p in pts if p[0] > start]
            if pts:
                ax2.step([t * k for t, _ in pts] + [end * k], [term for _, term in pts] + [pts[-1][1]],
                         where="post", label=f"n{i}", lw=1.4)
        ax2.set_ylabel("term")
        ax2.set_title("current term of each node")
        ax2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="node")
        ax2.yaxis.get_major_locator().set_params(integer=True)
    (ax2 or ax).set_xlabel(f"time ({unit})")
    ax.set_xlim(start * k, end * k)
    return fig


def _draw_notes(axes: Sequence[Any], world: RaftWorld, start: float, end: float, k: float) -> list[str]:
    kinds: list[str] = []
    for note in world.notes:
        if not start <= note.time <= end or note.kind == "propose":
            continue
        if note.kind not in kinds:
            kinds.append(note.kind)
        for a in axes:
            a.axvline(note.time * k, color=NOTE_COLOURS[note.kind], ls="--", lw=1)
        axes[0].annotate(note.text, (note.time * k, 0), xycoords=("data", "axes fraction"), xytext=(2, 2),
                         textcoords="offset points", fontsize=7, color=NOTE_COLOURS[note.kind], rotation=0)
    return kinds


# ------------------------------------------------------------ message sequence diagram


def message_label(m: Message) -> str:
    """A short reading of a message, e.g. ``App [6@t2] commit 5`` or ``VoteResp granted``."""
    t = m.type
    if t == MessageType.APP:
        ents = ",".join(f"{e.index}@t{e.term}" for e in m.entries)
        return f"App prev {m.index}@t{m.log_term} [{ents}] commit {m.commit}"
    if t == MessageType.APP_RESP:
        return f"AppResp reject {m.index}, hint {m.reject_hint}" if m.reject else f"AppResp match {m.index}"
    if t in (MessageType.VOTE, MessageType.PRE_VOTE):
        name = "Vote" if t == MessageType.VOTE else "PreVote"
        return f"{name} t{m.term} last {m.index}@t{m.log_term}"
    if t in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        name = "VoteResp" if t == MessageType.VOTE_RESP else "PreVoteResp"
        return f"{name} {'rejected' if m.reject else 'granted'}"
    if t == MessageType.HEARTBEAT:
        return f"Heartbeat commit {m.commit}"
    if t == MessageType.HEARTBEAT_RESP:
        return "HeartbeatResp"
    return t.name.title().replace("_", "")


def sequence_diagram(world: RaftWorld, start: float, end: float, *, nodes: Sequence[int] | None = None,
                     skip: Iterable[MessageType] = (), title: str = "Message sequence",
                     origin: float | None = None, readies: bool = True) -> Figure:
    """Who sent what to whom, when: one lifeline per node, time running down (ms after `origin`,
    default `start`). Arrows are messages (dashed grey: lost or cut). If `readies`, each Ready
    that had to be made durable is a box on its node's lifeline from when the driver took it
    to when the fsync finished (its messages leave then), with what it carried; commits and
    role changes are marked."""
    ids = list(nodes or world.ids)
    col = {i: c for c, i in enumerate(ids)}
    origin = start if origin is None else origin
    skip = set(skip)
    ms = 1000.0
    flights = [f for f in world.flights if start <= f.sent_at <= end and f.message.from_ in col
               and f.message.to in col and f.message.type not in skip]
    height = max(4.0, min(22.0, 2.0 + 0.33 * (len(flights) + len(ids))))
    fig = Figure(figsize=(11, height), layout="constrained")
    ax = fig.subplots()
    for i in ids:
        ax.axvline(col[i], color="#999999", lw=1, zorder=0)
    kinds: dict[str, str] = {}
    stacked: dict[tuple[int, float], int] = {}
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for f in flights:
        m = f.message
        arrived = f.outcome in ("delivered", "in flight")  # in flight: arrives after the window
        t1 = f.done_at if f.done_at is not None else f.arrive_at
        x0, x1 = float(col[m.from_]), float(col[m.to])
        y0, y1 = (f.sent_at - origin) * ms, (t1 - origin) * ms
        name = m.type.name
        colour = kinds.setdefault(name, palette[len(kinds) % len(palette)])
        if not arrived:
            x1, y1 = (x0 + x1) / 2, (y0 + y1) / 2
        elif t1 > end:  # arrives after the window: draw it up to the window's edge
            frac = (end - f.sent_at) / (t1 - f.sent_at)
            x1, y1 = x0 + (x1 - x0) * frac, (end - origin) * ms
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color=colour if arrived else "#aaaaaa", lw=1.1,
                                    ls="-" if arrived else "--", shrinkA=0, shrinkB=0))
        if not arrived:
            ax.plot([x1], [y1], marker="x", color="#d62728", ms=6)
        # Labels start at the sender's lifeline; messages a node sends at one instant stack up.
        burst = (m.from_, round(f.sent_at, 9))
        rank = stacked.get(burst, 0)
        stacked[burst] = rank + 1
        right = x1 >= x0
        ax.annotate(message_label(m) + ("" if arrived else f" ({f.outcome})"), (x0, y0),
                    xytext=(6 if right else -6, -9 * rank - 2), textcoords="offset points", fontsize=6.5,
                    color=colour, ha="left" if right else "right", va="top",
                    bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.75))
    if readies:
        for rd in world.readies:
            if rd.node not in col or not start <= rd.time <= end or not (rd.must_sync or rd.committed_entries):
                continue
            x = col[rd.node]
            y0, y1 = (rd.time - origin) * ms, (rd.persisted_at - origin) * ms
            if rd.must_sync:
                ax.add_patch(_box(x, y0, y1))
            what = ["Ready" + (" (fsync)" if rd.must_sync else "")]
            if rd.hard_state is not None:
                hs = rd.hard_state
                what.append(f"HardState t{hs.term} vote n{hs.vote} commit {hs.commit}" if hs.vote else
                            f"HardState t{hs.term} commit {hs.commit}")
            if rd.entries:
                what.append("entries " + ",".join(f"{e.index}@t{e.term}" for e in rd.entries))
            if rd.committed_entries:
                what.append("apply " + ",".join(str(e.index) for e in rd.committed_entries))
            # On the side of the lifeline its own messages' labels do not use.
            left = not any(col.get(m.to, x) < x for m in rd.messages)
            ax.annotate("\n".join(what), (x, y0), xytext=(-6 if left else 6, 0), textcoords="offset points",
                        fontsize=6, va="top", ha="right" if left else "left", color="#444444")
    marked_roles = False
    for r in world.roles:
        if r.node in col and start <= r.time <= end and r.role in ("pre-candidate", "candidate", "leader", DOWN):
            marked_roles = True
            ax.plot([col[r.node]], [(r.time - origin) * ms], marker="D", color=ROLE_COLOURS[r.role],
                    mec="black", ms=7, zorder=3)
            ax.annotate(f"{r.role} t{r.term}", (col[r.node], (r.time - origin) * ms), xytext=(-6, 3),
                        textcoords="offset points", fontsize=7, ha="right", va="bottom", weight="bold")
    ax.set_xticks(range(len(ids)), [f"n{i}" for i in ids])
    ax.xaxis.tick_top()
    ax.set_xlim(-0.9, len(ids) - 0.1)
    ax.set_ylim((end - origin) * ms, (start - origin) * ms)
    ax.set_ylabel(f"time (ms after {origin * ms:.1f} ms)")
    ax.set_xlabel("node (lifelines)")
    ax.set_title(title)
    handles: list[Any] = [Line2D([], [], color=c, label=k) for k, c in kinds.items()]
    if any(f.outcome not in ("delivered", "in flight") for f in flights):
        handles.append(Line2D([], [], color="#aaaaaa", ls="--", marker="x", mec="#d62728", label="lost / cut"))
    if readies:
        handles.append(Patch(fc="#fff2cc", ec="#b58900", label="Ready persisted + fsync"))
    if marked_roles:
        handles.append(Line2D([], [], marker="D", color="white", mec="black", label="role change"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="message / event")
    return fig


def _box(x: float, y0: float, y1: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.03, y0), 0.06, max(y1 - y0, 0.05), fc="#fff2cc", ec="#b58900", lw=0.8, zorder=2)


# ------------------------------------------------------------------ logs as grids


def log_grids(panels: Sequence[tuple[str, Mapping[str, Sequence[int]]]], *, title: str = "Logs",
              committed: Sequence[Mapping[str, int]] | None = None,
              greyed: Sequence[Iterable[str]] | None = None) -> Figure:
    """Each panel: one row per server, one cell per log index, coloured by the entry's term
    (term written in the cell), as the Raft paper draws logs. `committed[p][row]` draws a
    thick line after that index; rows in `greyed[p]` (e.g. crashed servers) are faded."""
    width = max((len(log) for _, logs in panels for log in logs.values()), default=1)
    rows = max(len(logs) for _, logs in panels)
    fig = Figure(figsize=(max(6.0, max(2.6, 0.45 * width + 1.0) * len(panels) + 0.6), 0.42 * rows + 2.2),
                 layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    terms_seen: set[int] = set()
    for p, (ax, (name, logs)) in enumerate(zip(axes, panels)):
        faded = set(greyed[p]) if greyed else set()
        for r, (label, log) in enumerate(logs.items()):
            alpha = 0.3 if label in faded else 1.0
            for idx, term in enumerate(log, start=1):
                terms_seen.add(term)
                ax.add_patch(_cell(idx, r, TERM_COLOURS[(term - 1) % len(TERM_COLOURS)], alpha))
                ax.text(idx, r, str(term), ha="center", va="center", fontsize=8, alpha=alpha)
            if committed and label in committed[p]:
                c = committed[p][label]
                ax.plot([c + 0.5, c + 0.5], [r - 0.45, r + 0.45], color="black", lw=2.5)
        ax.set_xlim(0.5, width + 0.5)
        ax.set_ylim(len(logs) - 0.5, -0.5)
        ax.set_yticks(range(len(logs)), list(logs))
        ax.set_xticks(range(1, width + 1))
        ax.set_xlabel("log index")
        ax.set_title(name, fontsize=10)
        ax.set_aspect("equal")
    axes[0].set_ylabel("server")
    handles: list[Any] = [Patch(color=TERM_COLOURS[(t - 1) % len(TERM_COLOURS)], label=f"term {t}")
                          for t in sorted(terms_seen)]
    if committed:
        handles.append(Line2D([], [], color="black", lw=2.5, label="commit index"))
    if greyed and any(greyed):
        handles.append(Patch(fc="#dddddd", ec="black", alpha=0.3, label="server down (faded)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8,
               title="entry term (the number in each cell)")
    fig.suptitle(title)
    return fig


def _cell(x: float, y: float, colour: str, alpha: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.45, y - 0.42), 0.9, 0.84, fc=colour, ec="black", lw=0.6, alpha=alpha)


# ------------------------------------------------------------------ client histories


def history_timeline(ops: Sequence[Operation], *, result: CheckResult | None = None,
                     start: float | None = None, end: float | None = None, keys: Iterable[str] | None = None,
                     labels: bool | None = None, title: str = "Client history",
                     shade: Sequence[tuple[float, float, str]] = ()) -> Figure:
    """One lane per client, a bar from call to return per operation, coloured by kind; ``info``
    operations (outcome unknown) are hatched and run to the right edge, ``fail`` ones are left
    out. With a `result` holding a counterexample, its operations are outlined in red and
    labelled. `shade`: (start, stop, label) spans drawn behind (e.g. faults)."""
    marked = {op.index for op in result.counterexample.ops} if result and result.counterexample else set()
    wanted = set(keys) if keys is not None else None
    chosen = [op for op in ops if op.status is not Status.FAIL
              and (start is None or op.end >= start) and (end is None or op.call <= end)
              and (wanted is None or wanted.intersection(op.keys()))]
    if not chosen:
        raise ValueError("no operation in the window")
    lo = min(op.call for op in chosen) if start is None else start
    hi = max(op.call if op.return_ is None else op.return_ for op in chosen) if end is None else end
    if start is None or end is None:  # a margin around what is drawn, so the labels fit
        pad = max(hi - lo, 1e-3) * 0.04
        lo, hi = (lo - pad if start is None else lo), (hi + pad if end is None else hi)
    lanes = sorted({op.client for op in chosen})
    lane = {c: n for n, c in enumerate(lanes)}
    show_labels = len(chosen) <= 60 if labels is None else labels
    fig = Figure(figsize=(12, 1.6 + 0.32 * len(lanes)), layout="constrained")
    ax = fig.subplots()
    shade_colour: dict[str, str] = {}
    for s0, s1, label in shade:
        if s1 >= lo and s0 <= hi:
            colour = shade_colour.setdefault(label, SHADE_COLOURS[len(shade_colour) % len(SHADE_COLOURS)])
            ax.axvspan(max(s0, lo), min(s1, hi), color=colour, alpha=0.35, lw=0)
    for op in chosen:
        stop = hi if op.return_ is None else op.return_
        hot = op.index in marked
        ax.barh(lane[op.client], max(stop - op.call, (hi - lo) * 0.002), left=op.call, height=0.62,
                color=OP_COLOURS[op.op], alpha=0.45 if op.return_ is None else 0.9,
                hatch="//" if op.return_ is None else None,
                edgecolor="#d62728" if hot else OP_COLOURS[op.op], linewidth=2.2 if hot else 0.3)
        if hot or show_labels:
            near_right = op.call > lo + 0.7 * (hi - lo)  # label leftwards from the bar's end
            ax.text(stop if near_right else op.call, lane[op.client] - 0.36, describe_call(op),
                    fontsize=7 if hot else 6, ha="right" if near_right else "left",
                    color="#8b0000" if hot else "#333333", weight="bold" if hot else "normal", clip_on=True)
    ax.set_yticks(range(len(lanes)), [f"client {c}" for c in lanes])
    ax.set_ylim(len(lanes) - 0.4, -0.8)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("client")
    ax.set_title(title)
    kinds = sorted({op.op for op in chosen}, key=lambda k: k.value)
    handles: list[Any] = [Patch(color=OP_COLOURS[k], label=k.value) for k in kinds]
    if any(op.return_ is None for op in chosen):
        handles.append(Patch(fc="white", ec="black", hatch="//", label="info (outcome unknown)"))
    if marked:
        handles.append(Patch(fc="white", ec="#d62728", lw=2, label="in the counterexample"))
    handles += [Patch(color=c, alpha=0.35, label=label) for label, c in shade_colour.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="operation")
    return fig


# ------------------------------------------------------------------ spans over time

SPAN_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
MARK_STYLES = [("o", "#2ca02c"), ("X", "#d62728"), ("v", "#1f77b4"), ("s", "#9467bd"), ("D", "#8c564b")]


def span_figure(spans: Sequence[tuple[str, float, float, str]], *, title: str, lanes: Sequence[str] | None = None,
                events: Sequence[tuple[float, str]] = (), marks: Sequence[tuple[str, float, str]] = (),
                texts: Sequence[tuple[str, float, str]] = (), xlabel: str = "simulated time (s)",
                ylabel: str = "", colours: Mapping[str, str] | None = None,
                xlim: tuple[float, float] | None = None) -> Figure:
    """Intervals on lanes, one colour per kind: `spans` are (lane, start, end, kind). `events`
    (time, label) are drawn as dashed vertical lines (e.g. faults), `marks` (lane, time, kind)
    as markers, `texts` (lane, time, text) as small labels. Lanes top to bottom in `lanes`
    order (default: first appearance)."""
    order = list(lanes) if lanes is not None else list(dict.fromkeys(
        [sp[0] for sp in spans] + [m[0] for m in marks] + [t[0] for t in texts]))
    row = {lane: n for n, lane in enumerate(order)}
    kinds = list(dict.fromkeys(sp[3] for sp in spans))
    colour = {k: (colours or {}).get(k, SPAN_COLOURS[n % len(SPAN_COLOURS)]) for n, k in enumerate(kinds)}
    fig = Figure(figsize=(11, 1.5 + 0.42 * len(order)), layout="constrained")
    ax = fig.subplots()
    for lane, start, end, kind in spans:
        ax.broken_barh([(start, max(end - start, 1e-3))], (row[lane] - 0.32, 0.64), color=colour[kind], lw=0)
    mark_kinds = list(dict.fromkeys(m[2] for m in marks))
    style = {k: MARK_STYLES[n % len(MARK_STYLES)] for n, k in enumerate(mark_kinds)}
    for lane, t, kind in marks:
        marker, c = style[kind]
        ax.plot([t], [row[lane]], marker=marker, color=c, mec="black", ms=8, ls="", zorder=3)
    for lane, t, text in texts:
        ax.annotate(text, (t, row[lane]), xytext=(2, 8), textcoords="offset points", fontsize=7)
    for n, (t, label) in enumerate(sorted(events)):
        ax.axvline(t, color="#7f7f7f", ls="--", lw=1)
        top = n % 2 == 1  # alternate bottom and top, so that close events stay readable
        ax.annotate(label, (t, 1 if top else 0), xycoords=("data", "axes fraction"), xytext=(2, -2 if top else 2),
                    textcoords="offset points", fontsize=7, color="#555555", rotation=90,
                    va="top" if top else "bottom")
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.6)
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    handles: list[Any] = [Patch(color=colour[k], label=k) for k in kinds]
    handles += [Line2D([], [], marker=style[k][0], color=style[k][1], mec="black", ls="", label=k) for k in mark_kinds]
    if events:
        handles.append(Line2D([], [], color="#7f7f7f", ls="--", label="event (labelled)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def step_figure(series: Mapping[str, Sequence[tuple[float, float]]], *, title: str, ylabel: str,
                xlabel: str = "simulated time (s)", events: Sequence[tuple[float, str]] = (),
                xlim: tuple[float, float] | None = None) -> Figure:
    """One step line per series of (time, value) points (the value holds until the next point)."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    end = xlim[1] if xlim is not None else max((t for pts in series.values() for t, _ in pts), default=1.0)
    for n, (label, pts) in enumerate(series.items()):
        if pts:
            xs = [t for t, _ in pts] + [end]
            ys = [v for _, v in pts] + [pts[-1][1]]
            ax.step(xs, ys, where="post", label=label, lw=2.2 if n == 0 else 1.4, ls="-" if n == 0 else "--")
    for t, label in events:
        ax.axvline(t, color="#7f7f7f", ls=":", lw=1)
        ax.annotate(label, (t, 1), xycoords=("data", "axes fraction"), xytext=(2, -2), textcoords="offset points",
                    fontsize=7, color="#555555", rotation=90, va="top")
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


# ------------------------------------------------------------------ distributions


def cdf_figure(samples: Mapping[str, Sequence[float]], *, title: str, xlabel: str, log_x: bool = False,
               legend_title: str = "") -> Figure:
    """The empirical CDF of each sample, one line each (y: percent of samples at or below x)."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, values in samples.items():
        xs = sorted(values)
        if not xs:
            continue
        ax.step([xs[0], *xs], [0.0, *(100 * (n + 1) / len(xs) for n in range(len(xs)))], where="post",
                label=f"{label} (n={len(xs)})", lw=1.6)
    if log_x:
        ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cumulative percent of trials")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, title=legend_title or None)
    return fig


def bar_figure(values: Mapping[str, float], *, title: str, xlabel: str, ylabel: str, label: str,
               annotate: Callable[[float], str] | None = None) -> Figure:
    """One bar per category (one series, named `label` in the legend)."""
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    names = list(values)
    bars = ax.bar(names, [values[n] for n in names], color="#4c72b0", label=label)
    for b, n in zip(bars, names):
        text = annotate(values[n]) if annotate else (f"{values[n]:g}" if not math.isnan(values[n]) else "")
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), text, ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return fig


__all__ = ["ROLE_COLOURS", "Table", "bar_figure", "cdf_figure", "history_timeline", "log_grids", "message_label",
           "role_timeline", "sequence_diagram", "span_figure", "step_figure"]
