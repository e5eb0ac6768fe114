"""The audit's report: the figures of ``agentd.tools.audit.audit_run`` as headings, paragraphs and
tables, rendered for the terminal and as markdown (RUN/audit.md), next to RUN/audit.json."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from agentd.tools.audit_dp import dp_blocks


def _traffic_blocks(r: dict[str, Any]) -> list[tuple]:
    cut = [n for n, e in r["logs"].items() if e["truncated_tail"]]
    bad = [f"{n} ({e['error']})" for n, e in r["logs"].items() if e["error"]]
    rows = [[e["src"], e["dst"], e["kind"], e["plane"], e["sent"], e["sent_bytes"],
             e["received"], e["received_bytes"], "!" if e["sent"] != e["received"] else ""]
            for e in r["edges"]]
    lost = r["sent_not_received"]
    records = sum(e["records"] for e in r["logs"].values())
    return [
        ("title", f"Audit of {r['run']} (algo {r['algo']})"),
        ("p", f"{len(r['logs'])} logs, {records} records"
              + (f"; truncated last record skipped in: {', '.join(cut)}" if cut else "")
              + (f"; unreadable: {'; '.join(bad)}" if bad else "")),
        ("h", "Messages per edge and kind"),
        ("p", "sent/bytes from the sender's log, received/bytes from the receiver's log; "
              + "peer edges first; ! marks a difference"),
        ("table", ["src", "dst", "kind", "plane", "sent", "bytes", "received", "bytes", ""], rows),
        ("p", "sent == received on every edge" if not lost else
              f"sent != received on {len(lost)} edge/kind rows (lost in flight, a log cut "
              "short, or a process killed before it flushed its log: an env server's step "
              "replies and an agent's peer messages are logged right after they leave)"),
        ("h", "Guard rejections"),
        ("table", ["receiver", "claimed sender", "reason", "plane", "count"],
         [list(x.values()) for x in r["rejections"]]) if r["rejections"] else ("p", "none"),
    ]


def _security_blocks(r: dict[str, Any]) -> list[tuple]:
    logs = r["logs"].values()
    secure = [e for e in logs if e.get("secure")]
    insecure = [e.get("process", "?") for e in logs if e.get("insecure")]
    if len(secure) == len(r["logs"]):
        links = "every process ran CURVE (encrypted, both ends authenticated by key)"
    elif secure:
        links = f"only {len(secure)} of {len(r['logs'])} processes ran CURVE"
    else:
        links = "plaintext (no keys)"
    hs = r["handshakes_failed"]
    files = r.get("files") or {}
    missing = files.get("missing") or {}
    blocks: list[tuple] = [
        ("h", "Security"),
        ("p", f"links: {links}" + (f"; plaintext beyond loopback allowed on purpose by: "
                                   f"{', '.join(insecure)}" if insecure else "")),
        *([("p", "TEST-ONLY link delay was active in: " + ", ".join(
            f"{e.get('process', '?')} ({e['test_link_delay']})" for e in logs
            if e.get("test_link_delay")))] if any(e.get("test_link_delay") for e in logs)
          else []),
        ("p", "failed handshakes (connections refused before any message):"
              + ("" if hs else " none")),
    ]
    if hs:
        blocks.append(("table", ["process", "plane", "reason", "peer", "count"],
                       [list(x.values()) for x in hs]))
    if files:
        shipped = files.get("shipped") or {}
        blocks.append(("p", f"run directory: {len(shipped)} processes shipped their files here"
                            + ("; MISSING: " + "; ".join(f"{who}: {', '.join(paths)}"
                                                         for who, paths in missing.items())
                               if missing else "; nothing missing")))
    return blocks


def _label_block(r: dict[str, Any]) -> tuple:
    """The run's privacy label, from config.toml and from every log's meta record."""
    label = "private" if r["private"] else "NON-PRIVATE"
    off = [name for name, e in r["logs"].items() if e.get("private", r["private"]) != r["private"]]
    where = (f"the same in all {len(r['logs'])} logs" if not off else
             f"but these logs say otherwise: {', '.join(off)}")
    return ("p", f"run labelled {label} in config.toml; {where}")


def _peer_blocks(p: dict[str, Any]) -> list[tuple]:
    permitted = "unknown algo" if p["permitted"] is None else ", ".join(p["permitted"]) or "none"
    verdict = "YES" if p["only_permitted"] else "NO"
    if p["not_permitted"]:
        verdict += f" (not permitted: {', '.join(p['not_permitted'])})"
    blocks: list[tuple] = [
        ("h", "Peer edges"),
        ("p", f"permitted peer kinds for {p['algo']}: {permitted}"),
        ("table", ["src", "dst", "kinds"],
         [[e["src"], e["dst"], ", ".join(e["kinds"]) or "(none)"] for e in p["edges"]]),
        ("p", f"only permitted peer kinds left any agent: {verdict}"),
    ]
    if p["not_peer_plane"]:
        blocks.append(("p", "BUG: kinds that are not peer kinds crossed agent-to-agent edges: "
                            + ", ".join(p["not_peer_plane"])))
    return blocks


def _blocks(r: dict[str, Any]) -> list[tuple]:
    """The report as headings, paragraphs and tables, rendered as text or markdown."""
    probe = r["probe"]
    return [*_traffic_blocks(r), *_security_blocks(r), *_peer_blocks(r["peer"]), _label_block(r),
            ("h", f"Leakage probe ({probe['label']})"), ("p", probe["method"]),
            ("table", ["agent", "peer msgs", "steps", "accuracy", "chance", "baseline", "note"],
             [list(a.values()) for a in probe["agents"]]), *dp_blocks(r.get("dp"))]


def _cell(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _table(headers: list[str], rows: list[list[Any]], markdown: bool) -> list[str]:
    cells = [headers, *([_cell(v) for v in row] for row in rows)]
    numeric = [bool(rows) and all(isinstance(row[i], int | float | None) for row in rows)
               for i in range(len(headers))]
    if markdown:
        rule = ["---:" if num else "---" for num in numeric]
        return ["| " + " | ".join(row) + " |" for row in [cells[0], rule, *cells[1:]]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  " + "  ".join(c.rjust(w) if num else c.ljust(w)
                             for c, w, num in zip(row, widths, numeric, strict=True)).rstrip()
            for row in cells]


def render(report: dict[str, Any], markdown: bool = False) -> str:
    lines: list[str] = []
    for what, *rest in _blocks(report):
        if what == "title":
            lines += [f"# {rest[0]}" if markdown else rest[0]]
        elif what == "h":
            lines += ["", f"## {rest[0]}", ""] if markdown else ["", rest[0], "-" * len(rest[0])]
        elif what == "p":
            lines += [rest[0], ""] if markdown else textwrap.wrap(rest[0], 96)
        else:
            lines += [*_table(*rest, markdown), *([""] if markdown else [])]
    text = "\n".join(lines).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text + "\n"


def write_reports(run_dir: Path, report: dict[str, Any]) -> str:
    """Write RUN/audit.json and RUN/audit.md; return the terminal report."""
    (run_dir / "audit.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "audit.md").write_text(render(report, markdown=True))
    return render(report)
