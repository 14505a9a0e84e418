"""Generate docs/api.md from the comments in protos/understanding/v1/*.proto.

    python scripts/gen_api_docs.py            # write docs/api.md
    python scripts/gen_api_docs.py --check    # exit 1 when docs/api.md is stale (CI)

A small line-based reader of our own protos (proto3, one declaration per line,
`//` comments): a comment block right above a declaration, or a comment at the
end of its line, documents it. The proto files stay the single source.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos" / "understanding" / "v1"
OUT = ROOT / "docs" / "api.md"
# Order of the sections: the service first, then what it speaks.
FILES = ("understanding.proto", "jobs.proto", "live.proto", "common.proto", "events.proto")

_RPC = re.compile(r"rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)")
_FIELD = re.compile(r"(repeated\s+|optional\s+)?(map<\s*\w+\s*,\s*[\w.]+\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)")
_ENUM_VALUE = re.compile(r"(\w+)\s*=\s*(-?\d+)")
_BLOCK = re.compile(r"(service|message|enum|oneof)\s+(\w+)\s*\{")


@dataclass
class Item:
    kind: str  # service, rpc, message, enum, field, value
    name: str
    doc: str = ""
    detail: dict[str, str] = field(default_factory=dict)
    children: list[Item] = field(default_factory=list)


def parse(path: pathlib.Path) -> list[Item]:
    top: list[Item] = []
    stack: list[Item] = []
    oneof: list[str] = []  # the oneof a field belongs to, if any (parallel to brace depth)
    comment: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        code, _, trailing = line.partition("//")
        code, trailing = code.strip(), trailing.strip()
        if not code:
            if line.startswith("//"):
                comment.append(line[2:].removeprefix(" ").rstrip())
            elif not line:
                comment = []  # a blank line detaches a comment from what follows
            continue
        doc = "\n".join(comment).strip()
        if trailing:
            doc = f"{doc}\n{trailing}".strip()
        comment = []
        if code.startswith(("syntax", "package", "import", "option")):
            continue
        if block := _BLOCK.match(code):
            kind, name = block.groups()
            if kind == "oneof":
                oneof.append(name)
                continue
            item = Item(kind, name, doc)
            (stack[-1].children if stack else top).append(item)
            stack.append(item)
            continue
        if code.startswith("}"):
            if oneof and stack and stack[-1].kind == "message" and _in_oneof(raw):
                oneof.pop()
            elif stack:
                stack.pop()
            continue
        parent = stack[-1] if stack else None
        if parent is None:
            continue
        if parent.kind == "service" and (rpc := _RPC.match(code)):
            name, req_stream, req, resp_stream, resp = rpc.groups()
            parent.children.append(
                Item(
                    "rpc",
                    name,
                    doc,
                    {
                        "request": ("stream " if req_stream else "") + req,
                        "response": ("stream " if resp_stream else "") + resp,
                    },
                )
            )
        elif parent.kind == "enum" and (value := _ENUM_VALUE.match(code)):
            parent.children.append(Item("value", value.group(1), doc, {"number": value.group(2)}))
        elif parent.kind == "message" and (f := _FIELD.match(code)):
            label, kind, name, number = f.groups()
            compact = re.sub(r"\s+", "", kind)
            type_name = ("repeated " if (label or "").strip() == "repeated" else "") + compact
            detail = {"type": type_name, "number": number}
            if oneof and _in_oneof(raw):
                detail["oneof"] = oneof[-1]
            parent.children.append(Item("field", name, doc, detail))
    return top


def _in_oneof(raw: str) -> bool:
    """Our protos indent oneof members by 4 spaces (and its closing brace by 2)."""
    indent = len(raw) - len(raw.lstrip(" "))
    return indent >= 4 or (raw.strip().startswith("}") and indent == 2)


def _doc_md(doc: str) -> str:
    """Comment text as Markdown: indented runs (aligned lists) become code blocks."""
    out: list[str] = []
    block: list[str] = []
    for line in doc.splitlines():
        if line.startswith("  "):
            block.append(line)
            continue
        if block:
            out += ["```text", *block, "```"]
            block = []
        out.append(line)
    if block:
        out += ["```text", *block, "```"]
    return "\n".join(out)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _link(type_name: str, known: set[str]) -> str:
    bare = type_name.removeprefix("repeated ").removeprefix("stream ")
    prefix = type_name[: len(type_name) - len(bare)]
    if bare in known:
        return f"{prefix}[`{bare}`](#{bare.lower()})"
    return f"{prefix}`{bare}`"


def render(files: dict[str, list[Item]]) -> str:
    known = {i.name for items in files.values() for i in items if i.kind in ("message", "enum")}
    out = [
        "# API reference: `understanding.v1`",
        "",
        "<!-- Generated by scripts/gen_api_docs.py from protos/understanding/v1/*.proto: edit the .proto comments, "
        "then run `python scripts/gen_api_docs.py`. -->",
        "",
        "The gRPC contract of the service. Stubs for any language are generated from "
        "[`protos/`](../protos/understanding/v1); the Python SDK (`clients/python`) wraps them. "
        "Events on Kafka: see [events.md](events.md).",
        "",
    ]
    for items in files.values():
        for service in (i for i in items if i.kind == "service"):
            out += [f"## Service `{service.name}`", "", _doc_md(service.doc), ""]
            out += ["| RPC | request | response |", "| --- | --- | --- |"]
            for rpc in service.children:
                out.append(
                    f"| [`{rpc.name}`](#{rpc.name.lower()}) | {_link(rpc.detail['request'], known)} "
                    f"| {_link(rpc.detail['response'], known)} |"
                )
            out.append("")
            for rpc in service.children:
                out += [
                    f"### {rpc.name}",
                    "",
                    f"`{rpc.name}({rpc.detail['request']}) returns ({rpc.detail['response']})`",
                    "",
                ]
                out += [_doc_md(rpc.doc) or "_(undocumented)_", ""]
    for filename, items in files.items():
        types = [i for i in items if i.kind in ("message", "enum")]
        if not types:
            continue
        out += [f"## Types in `{filename}`", ""]
        for item in types:
            out += [f"### {item.name}", ""]
            if item.doc:
                out += [_doc_md(item.doc), ""]
            if item.kind == "enum":
                out += ["| value | number | meaning |", "| --- | --- | --- |"]
                for v in item.children:
                    out.append(f"| `{v.name}` | {v.detail['number']} | {_cell(v.doc)} |")
            elif item.children:
                out += ["| field | type | # | meaning |", "| --- | --- | --- | --- |"]
                for f in item.children:
                    note = f" (oneof `{f.detail['oneof']}`)" if "oneof" in f.detail else ""
                    out.append(
                        f"| `{f.name}` | {_link(f.detail['type'], known)} | {f.detail['number']} | {_cell(f.doc)}{note} |"
                    )
            else:
                out.append("_(no fields)_")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the output differs from docs/api.md")
    args = parser.parse_args(argv)
    files = {name: parse(PROTOS / name) for name in FILES if (PROTOS / name).exists()}
    missing = sorted(p.name for p in PROTOS.glob("*.proto") if p.name not in files)
    files.update({name: parse(PROTOS / name) for name in missing})
    text = render(files)
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
