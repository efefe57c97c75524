"""The fixtures' manifest text: one line per top-level field and per case field, so the files stay small and
diffable. Shared by make_quant_fixtures.py (gguf-py's cases) and make_kquant_fixtures.py (llama.cpp's K-quant cases),
which must write the same text and keep each other's cases, and by make_layout_fixtures.py (compact values).
Plain json only: the llama-cpp-python environment need not have gguf-py."""
import json


def dump_manifest(manifest, compact_values=False):
    """JSON with one line per group. A case's list values get a line per element, or with `compact_values` every
    value is one compact line (no spaces after separators)."""
    lines = ["{"]
    for k, v in manifest.items():
        if k != "cases":
            lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append(' "cases": [')
    for i, case in enumerate(manifest["cases"]):
        lines.append("  {")
        items = list(case.items())
        for j, (k, v) in enumerate(items):
            end = "," if j + 1 < len(items) else ""
            if compact_values:
                lines.append(f"   {json.dumps(k)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))}{end}")
            elif isinstance(v, list) and v:
                lines.append(f"   {json.dumps(k)}: [")
                lines += [f"    {json.dumps(e, ensure_ascii=False)}{',' if n + 1 < len(v) else ''}" for n, e in enumerate(v)]
                lines.append(f"   ]{end}")
            else:
                lines.append(f"   {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}{end}")
        lines.append("  }" + ("," if i + 1 < len(manifest["cases"]) else ""))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"

