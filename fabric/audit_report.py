"""``fabric audit report``: one self-contained HTML page an auditor can open, mail or archive.

No scripts, no external assets: inline CSS, an inline SVG chart, and ``<details>`` for the
per-record histories, so it renders the same offline, in a mail client's viewer, or years
later. Every piece of stored data goes through `html.escape`: records hold whatever
agents wrote, ``<script>`` included.

Two passes over the log, neither holding events: the first verifies the chain and counts
(per type, writer, time bucket, and per record its last change and status: memory
grows with records, not events); the second decodes only the events of the records
shown (the ``max_records`` most recently changed).
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from fabric.audit import AuditSource, Version, clip, fold_versions, iso, now_us
from fabric.errors import CorruptLogError
from fabric.events import Deleted, Forgotten, Stored
from fabric.forget import is_redacted
from fabric.log import Envelope, EventLog
from fabric.state import Change

_MINUTE: Final = 60 * 1_000_000
_HOUR: Final = 3600 * 1_000_000
_DAY: Final = 24 * _HOUR
_CATEGORIES: Final = (("stored", "#2f9e44"), ("updated", "#f08c00"), ("deleted", "#e03131"),
                      ("forgotten", "#862e9c"), ("accessed", "#adb5bd"), ("other", "#4c6ef5"))
_MIN_SLOTS: Final = 24
_CATEGORY_OF: Final = {"stored": "stored", "updated": "updated", "deleted": "deleted", "forgotten": "forgotten",
                       "accessed": "accessed"}


@dataclass
class _RecordInfo:
    last_seq: int = 0
    events: int = 0
    status: str = "live"


@dataclass
class ReportData:
    data_dir: str
    generated: int
    verified: bool = True
    problem: str | None = None
    events: int = 0
    segments: int = 0
    bytes: int = 0
    head_hash: str = ""
    first_ts: int | None = None
    last_ts: int | None = None
    encrypted: bool = False
    by_type: Counter[str] = field(default_factory=Counter)
    by_writer: Counter[str] = field(default_factory=Counter)
    bucket: int = _HOUR
    buckets: dict[int, Counter[str]] = field(default_factory=dict)
    status: Counter[str] = field(default_factory=Counter)
    histories: list[tuple[str, str, list[Version]]] = field(default_factory=list)
    omitted: int = 0


def collect(src: AuditSource, *, max_records: int = 200) -> ReportData:
    """Everything the page shows, from the log alone."""
    log = src.log
    data = ReportData(data_dir=str(log.path), generated=now_us(), encrypted=bool(getattr(src.codec, "encrypted", 0)))
    try:
        report = log.verify()
        data.events, data.segments, data.bytes, data.head_hash = (report.events, report.segments, report.bytes,
                                                                   report.last_hash)
    except CorruptLogError as e:
        data.verified = False
        data.problem = str(e)
        data.segments = len(log.segments())
        data.bytes = log.size_bytes()
    first = next(iter(log.read(1, 1)), None)
    data.first_ts = first.ts if first is not None else None
    records: dict[str, _RecordInfo] = {}
    last: Envelope | None = None
    try:
        spans = _span(log, first)
        data.bucket = (_MINUTE if spans <= 2 * _HOUR else _HOUR if spans <= 3 * _DAY
                       else _DAY if spans <= 180 * _DAY else 7 * _DAY)
        for env in log.read(1):
            last = env
            data.by_type[env.type] += 1
            data.by_writer[env.writer] += 1
            slot = env.ts - env.ts % data.bucket
            data.buckets.setdefault(slot, Counter())[_CATEGORY_OF.get(env.type, "other")] += 1
            if env.id:
                info = records.setdefault(env.id, _RecordInfo())
                info.last_seq = env.seq
                info.events += 1
                if env.type == Stored.TYPE:
                    info.status = "forgotten" if is_redacted(env) else "live"
                elif env.type == Deleted.TYPE:
                    info.status = "deleted"
                elif env.type == Forgotten.TYPE:
                    info.status = "forgotten"
    except CorruptLogError as e:  # show what can be read; the banner says the rest
        data.verified = False
        data.problem = data.problem or str(e)
    if last is not None:
        data.last_ts = last.ts
        if not data.events:
            data.events = last.seq
    data.status = Counter(info.status for info in records.values())
    chosen = sorted(records, key=lambda rid: records[rid].last_seq, reverse=True)[:max_records]
    data.omitted = max(0, len(records) - len(chosen))
    wanted = set(chosen)
    events: dict[str, list[tuple[Envelope, Change]]] = {rid: [] for rid in chosen}
    try:
        for env in log.read(1):
            if env.id in wanted:
                events[env.id].append((env, src.decode(env)))
    except CorruptLogError:
        pass
    data.histories = [(rid, records[rid].status, fold_versions(events[rid])) for rid in chosen]
    return data


def _span(log: EventLog, first: Envelope | None) -> int:
    """µs from the first event to the last (read from the tail, not by scanning)."""
    last_seq = log.refresh()
    last = next(iter(log.read(last_seq, last_seq)), None) if last_seq else None
    return 0 if first is None or last is None else last.ts - first.ts


# --- rendering ------------------------------------------------------------------------------------

_E = html.escape

_CSS: Final = """
:root{--ink:#1f2933;--muted:#66788a;--line:#e4e7eb;--bg:#f5f7fa;--card:#fff;--ok:#2f9e44;--bad:#e03131}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);
font:15px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:28px 24px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:0 0 14px}
.sub{color:var(--muted);margin-bottom:22px}.mono,code{font-family:"SFMono-Regular",Menlo,Consolas,monospace;font-size:13px}
.banner{border-radius:10px;padding:18px 22px;margin-bottom:22px;color:#fff;display:flex;gap:18px;align-items:center}
.banner.ok{background:linear-gradient(135deg,#2f9e44,#37b24d)}.banner.bad{background:linear-gradient(135deg,#c92a2a,#e03131)}
.banner .icon{font-size:34px;line-height:1}.banner b{font-size:19px}.banner .mono{opacity:.92;word-break:break-all}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:20px 22px;margin-bottom:22px}
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:14px;margin-bottom:22px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.stat .n{font-size:26px;font-weight:650}.stat .l{color:var(--muted);font-size:13px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);
vertical-align:top}th{color:var(--muted);font-weight:600;font-size:13px}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:22px;align-items:start}
.legend span{display:inline-block;margin-right:14px;font-size:13px;color:var(--muted)}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
details{border:1px solid var(--line);border-radius:8px;margin-bottom:8px;background:#fff}
summary{cursor:pointer;padding:10px 14px;display:flex;gap:12px;align-items:baseline;list-style:none}
summary::-webkit-details-marker{display:none}summary:before{content:"\\25B8";color:var(--muted)}
details[open] summary:before{content:"\\25BE"}details[open] summary{border-bottom:1px solid var(--line)}
summary .excerpt{color:var(--muted);overflow:hidden;text-overflow:ellipsis;white-space:nowrap;flex:1}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.live{background:var(--ok)}.deleted{background:var(--bad)}.forgotten{background:#862e9c}
.t-stored{background:#2f9e44}.t-updated{background:#f08c00}.t-deleted{background:#e03131}
.t-forgotten{background:#862e9c}.t-accessed{background:#adb5bd}
.versions{padding:6px 16px 14px}.version{border-left:3px solid var(--line);padding:8px 0 8px 14px;margin:6px 0}
.version .meta{color:var(--muted);font-size:13px}.content{white-space:pre-wrap;background:var(--bg);border-radius:6px;
padding:8px 10px;margin:6px 0}del{background:#ffe3e3;color:#c92a2a}
ins{background:#d3f9d8;color:#2b8a3e;text-decoration:none}
del,ins{padding:0 2px;border-radius:3px;margin:0 1px}.fields{font-size:13px;color:var(--muted)}
.fields b{color:var(--ink);font-weight:600}.fields span{margin-right:14px;display:inline-block}
.changes td{font-size:13px}.muted{color:var(--muted)}footer{color:var(--muted);font-size:12px;text-align:center}
"""


def render(data: ReportData) -> str:
    """The whole page as one string."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>Memory Fabric audit: {_E(data.data_dir)}</title><style>{_CSS}</style></head><body><main>",
        "<h1>Memory Fabric audit report</h1>",
        f"<div class='sub'>store <code>{_E(data.data_dir)}</code> · generated {_E(_when(data.generated))}</div>",
        _banner(data), _stats(data),
        f"<section class='card'><h2>Timeline: events per {_E(_bucket_name(data.bucket))}</h2>{_chart(data)}</section>",
        _summary(data), _histories(data),
        "<footer>Generated by <code>fabric audit report</code>. Self-contained: no scripts, no external files."
        "</footer></main></body></html>",
    ]
    return "".join(parts)


def _when(us: int | None) -> str:
    return "—" if us is None else iso(us).replace("T", " ")[:19] + " UTC"


def _bucket_name(bucket: int) -> str:
    return {_MINUTE: "minute", _HOUR: "hour", _DAY: "day"}.get(bucket, "week")


def _banner(d: ReportData) -> str:
    if d.verified:
        return (f"<div class='banner ok'><div class='icon'>&#10004;</div><div><b>Hash chain verified</b> — "
                f"{d.events:,} events in {d.segments} segment(s), every line chains to the one before.<br>"
                f"<span class='mono'>head {_E(d.head_hash)}</span></div></div>")
    return (f"<div class='banner bad'><div class='icon'>&#10008;</div><div><b>Hash chain BROKEN</b><br>"
            f"<span class='mono'>{_E(d.problem or 'unknown damage')}</span></div></div>")


def _stats(d: ReportData) -> str:
    cells = [(f"{d.status.get('live', 0):,}", "live records"), (f"{d.events:,}", "events"),
             (f"{d.status.get('deleted', 0) + d.status.get('forgotten', 0):,}", "deleted or forgotten"),
             (f"{len(d.by_writer):,}", "writers")]
    return "<div class='grid'>" + "".join(
        f"<div class='stat'><div class='n'>{n}</div><div class='l'>{_E(label)}</div></div>" for n, label in cells
    ) + "</div>"


def _chart(d: ReportData) -> str:
    if not d.buckets:
        return "<p class='muted'>No events.</p>"
    last = max(d.buckets)
    first = min(min(d.buckets), last - (_MIN_SLOTS - 1) * d.bucket)  # a lone burst still reads as a bar
    slots = list(range(first, last + d.bucket, d.bucket))[-240:]
    peak = max(sum(d.buckets.get(s, Counter()).values()) for s in slots) or 1
    width, height, left, bottom = 1040, 230, 48, 26
    plot_w, plot_h = width - left - 10, height - bottom - 12
    bar = plot_w / len(slots)
    out = [f"<svg viewBox='0 0 {width} {height}' width='100%' role='img' aria-label='events over time' "
           "xmlns='http://www.w3.org/2000/svg' font-family='Arial,sans-serif' font-size='11'>"]
    for frac in (0, 0.5, 1):
        y = 12 + plot_h * (1 - frac)
        out.append(f"<line x1='{left}' x2='{width - 10}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e4e7eb'/>"
                   f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end' fill='#66788a'>{int(peak * frac):,}</text>")
    label_every = max(1, len(slots) // 8)
    for i, slot in enumerate(slots):
        counts = d.buckets.get(slot, Counter())
        x = left + i * bar
        y = 12 + plot_h
        tip = f"{_when(slot)}: " + ", ".join(f"{n} {c}" for c, n in counts.most_common()) if counts else ""
        for cat, colour in _CATEGORIES:
            n = counts.get(cat, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            out.append(f"<rect x='{x + 1:.1f}' y='{y:.1f}' width='{max(bar - 2, 1):.1f}' height='{h:.1f}' "
                       f"fill='{colour}' rx='1.5'><title>{_E(tip)}</title></rect>")
        if i % label_every == 0:
            stamp = iso(slot)
            text = stamp[11:16] if d.bucket <= _HOUR else stamp[5:10]
            if d.bucket == _HOUR and (i == 0 or stamp[11:13] == "00"):
                text = stamp[5:10] + " " + text
            out.append(f"<text x='{x + bar / 2:.1f}' y='{height - 8}' text-anchor='middle' "
                       f"fill='#66788a'>{_E(text)}</text>")
    out.append("</svg>")
    legend = "".join(f"<span><i style='background:{c}'></i>{_E(cat)}</span>" for cat, c in _CATEGORIES
                     if any(b.get(cat) for b in d.buckets.values()))
    return "".join(out) + f"<div class='legend'>{legend}</div>"


def _summary(d: ReportData) -> str:
    rows = [("first event", _when(d.first_ts)), ("last event", _when(d.last_ts)),
            ("segments", f"{d.segments:,}"), ("log size", f"{d.bytes / 1024:,.1f} KB"),
            ("encryption", "AES-256-GCM (per-record keys)" if d.encrypted else "none"),
            ("records ever", f"{sum(d.status.values()):,}")]
    store = "".join(f"<tr><th>{_E(k)}</th><td>{_E(v)}</td></tr>" for k, v in rows)
    types = "".join(f"<tr><td>{_E(t)}</td><td class='num'>{n:,}</td></tr>" for t, n in d.by_type.most_common())
    writers = "".join(f"<tr><td class='mono'>{_E(w or '(none)')}</td><td class='num'>{n:,}</td></tr>"
                      for w, n in d.by_writer.most_common(10))
    return (f"<section class='card'><h2>Summary</h2><div class='cols'><table>{store}</table><div>"
            f"<table><tr><th>event type</th><th class='num'>events</th></tr>{types}</table><br>"
            f"<table><tr><th>writer</th><th class='num'>events</th></tr>{writers}</table></div></div></section>")


def _histories(d: ReportData) -> str:
    head = f"<section class='card'><h2>Record histories <span class='muted'>({len(d.histories):,} most recently " \
           f"changed{f', {d.omitted:,} more not shown' if d.omitted else ''})</span></h2>"
    # open the latest record that was edited (its diff is the most telling thing on the page)
    edited = next((i for i, (_, _, vs) in enumerate(d.histories) if any(v.type == "updated" for v in vs)), 0)
    return head + "".join(_record(rid, status, versions, opened=i == edited)
                          for i, (rid, status, versions) in enumerate(d.histories)) + "</section>"


def _record(rid: str, status: str, versions: list[Version], *, opened: bool = False) -> str:
    current = next((v.record for v in reversed(versions) if v.record is not None), None)
    excerpt = clip(current.content, 90) if current is not None else ""
    shown = [v for v in versions if v.type != "accessed"]
    reads = sum(1 for v in versions if v.type == "accessed")
    summary = (f"<summary><code>{_E(rid)}</code><span class='badge {_E(status)}'>{_E(status)}</span>"
               f"<span class='excerpt'>{_E(excerpt)}</span><span class='muted'>{len(shown)} change(s)"
               f"{f', {reads} read batch(es)' if reads else ''} · {_E(_when(versions[-1].ts) if versions else '')}"
               "</span></summary>")
    body = "".join(_version(v) for v in shown)
    return f"<details{' open' if opened else ''}>{summary}<div class='versions'>{body}</div></details>"


def _version(v: Version) -> str:
    meta = (f"<span class='badge t-{_E(v.type)}'>{_E(v.type)}</span> <span class='meta'>seq {v.seq} · "
            f"{_E(_when(v.ts))} · by <code>{_E(v.writer)}</code>{' · payload erased' if v.erased else ''}"
            f"{' · ' + _E(v.reason) if v.reason else ''}</span>")
    body = ""
    if v.type == "stored" and v.record is not None:
        return f"<div class='version'>{meta}<div class='content'>{_E(v.record.content)}</div>{_fields(v)}</div>"
    if v.word_diff:
        body += "<div class='content'>" + "".join(
            f"<del>{_E(t)}</del>" if op == "-" else f"<ins>{_E(t)}</ins>" if op == "+" else _E(t)
            for op, t in v.word_diff) + "</div>"
    changes = v.changes
    if changes and v.type not in ("deleted", "forgotten"):
        rows = "".join(f"<tr><td class='mono'>{_E(c.field)}</td><td>{_E(_show(c.old))}</td>"
                       f"<td>{_E(_show(c.new))}</td></tr>" for c in changes)
        body += f"<table class='changes'><tr><th>field</th><th>before</th><th>after</th></tr>{rows}</table>"
    return f"<div class='version'>{meta}{body}</div>"


def _fields(v: Version) -> str:
    """A new record's fields on one line: type, tier, tags, metadata, embedding."""
    rec = v.record
    assert rec is not None
    items = [("type", rec.memory_type), ("tier", rec.storage_tier)]
    if rec.tags:
        items.append(("tags", ", ".join(rec.tags)))
    items += [(c.field, _show(c.new)) for c in v.changes if c.field.startswith("metadata.") or c.field == "embedding"]
    return "<div class='fields'>" + "".join(f"<span>{_E(k)} <b>{_E(val)}</b></span>" for k, val in items) + "</div>"


def _show(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(x) for x in value) or "(none)"
    return str(value)
