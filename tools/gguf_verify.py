#!/usr/bin/env python3
"""Checks a GGUF file with gguf-py's reader (independent of vzquant's Swift reader) against expectations.

    python3 tools/gguf_verify.py FILE.gguf EXPECTED.json

EXPECTED.json (written by Tests/VZQuantTests/FormatTests.swift or tools/make_format_fixtures.py):

    {"alignment": 32,
     "metadata": [{"key": "k", "value": V}, ...],         # every key, in file order
     "tensors":  [{"name": "t", "type": "Q8_0", "dims": [ne0, ne1, ...], "values": [float, ...]}, ...]}

    V = {"type": "UINT8" | ... | "FLOAT64" | "BOOL" | "STRING", "value": scalar}
      | {"type": "ARRAY", "element": TYPE, "value": [V, ...]}

Tensors are compared in file order; "dims" in ggml order (innermost first); "values" are the expected fp32
values after gguf.quants.dequantize (compared exactly: both sides implement ggml's reference dequantizers).
Exit status 0 when everything matches; otherwise every mismatch is printed and the status is 1.
Needs: numpy, gguf (pip install gguf).
"""
import json
import math
import sys

try:
    import numpy as np
    import gguf
    from gguf import GGUFReader, GGUFValueType, GGMLQuantizationType
    from gguf.quants import dequantize
except ImportError as e:  # the Swift test turns this into a failure that says what to install
    print(f"gguf_verify.py needs numpy and gguf: {e}; run `pip install gguf`", file=sys.stderr)
    sys.exit(3)

SCALARS = {
    GGUFValueType.UINT8: np.uint8, GGUFValueType.INT8: np.int8, GGUFValueType.UINT16: np.uint16,
    GGUFValueType.INT16: np.int16, GGUFValueType.UINT32: np.uint32, GGUFValueType.INT32: np.int32,
    GGUFValueType.FLOAT32: np.float32, GGUFValueType.BOOL: np.bool_, GGUFValueType.UINT64: np.uint64,
    GGUFValueType.INT64: np.int64, GGUFValueType.FLOAT64: np.float64,
}


def decode(parts, i, vtype):
    """Rebuilds one value from gguf-py's flat list of parts (its reader flattens nested arrays);
    returns (V in the EXPECTED.json form, next part index)."""
    if vtype == GGUFValueType.STRING:
        # parts: length, bytes
        return {"type": "STRING", "value": bytes(parts[i + 1].tobytes()).decode("utf-8")}, i + 2
    if vtype == GGUFValueType.ARRAY:
        element = GGUFValueType(int(parts[i][0]))
        count = int(parts[i + 1][0])
        i += 2
        values = []
        for _ in range(count):
            v, i = decode(parts, i, element)
            values.append(v)
        return {"type": "ARRAY", "element": element.name, "value": values}, i
    v = parts[i][0]
    if vtype == GGUFValueType.BOOL:
        v = bool(v)
    elif vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        v = float(v)
    else:
        v = int(v)
    return {"type": vtype.name, "value": v}, i + 1


def same(expected, actual, where, errors):
    if expected["type"] != actual["type"]:
        errors.append(f"{where}: type {actual['type']}, expected {expected['type']}")
        return
    t = expected["type"]
    if t == "ARRAY":
        if expected["element"] != actual["element"]:
            errors.append(f"{where}: element type {actual['element']}, expected {expected['element']}")
        if len(expected["value"]) != len(actual["value"]):
            errors.append(f"{where}: {len(actual['value'])} elements, expected {len(expected['value'])}")
            return
        for k, (e, a) in enumerate(zip(expected["value"], actual["value"])):
            same(e, a, f"{where}[{k}]", errors)
        return
    e, a = expected["value"], actual["value"]
    if t == "FLOAT32":
        ok = np.float32(e) == np.float32(a) or (math.isnan(e) and math.isnan(a))
    elif t == "FLOAT64":
        ok = e == a or (math.isnan(e) and math.isnan(a))
    else:
        ok = e == a and type(e) is type(a)
    if not ok:
        errors.append(f"{where}: value {a!r}, expected {e!r}")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    reader = GGUFReader(path)
    errors = []

    if reader.alignment != expected["alignment"]:
        errors.append(f"alignment {reader.alignment}, expected {expected['alignment']}")

    # Metadata: gguf-py also lists the header fields (GGUF.*) as fields; only real KV pairs count.
    fields = [f for f in reader.fields.values() if not f.name.startswith("GGUF.")]
    got_keys = [f.name for f in fields]
    want_keys = [m["key"] for m in expected["metadata"]]
    if got_keys != want_keys:
        errors.append(f"metadata keys {got_keys}, expected {want_keys}")
    by_name = {f.name: f for f in fields}
    for m in expected["metadata"]:
        field = by_name.get(m["key"])
        if field is None:
            continue
        # parts: key length, key bytes, value type, value parts…
        actual, end = decode(field.parts, 3, GGUFValueType(int(field.parts[2][0])))
        if end != len(field.parts):
            errors.append(f"metadata '{m['key']}': {len(field.parts) - end} parts left over")
        same(m["value"], actual, f"metadata '{m['key']}'", errors)

    got_names = [t.name for t in reader.tensors]
    want_names = [t["name"] for t in expected["tensors"]]
    if got_names != want_names:
        errors.append(f"tensor names {got_names}, expected {want_names}")
    for want, t in zip(expected["tensors"], reader.tensors):
        name = want["name"]
        if t.tensor_type.name != want["type"]:
            errors.append(f"tensor '{name}': type {t.tensor_type.name}, expected {want['type']}")
            continue
        dims = [int(d) for d in t.shape]
        if dims != want["dims"]:
            errors.append(f"tensor '{name}': dims {dims}, expected {want['dims']}")
            continue
        values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        want_values = np.array(want["values"], dtype=np.float32)
        if values.shape != want_values.shape:
            errors.append(f"tensor '{name}': {values.size} values, expected {want_values.size}")
        elif not np.array_equal(values, want_values):
            bad = int(np.argmax(values != want_values))
            errors.append(f"tensor '{name}': value [{bad}] is {values[bad]!r}, expected {want_values[bad]!r} "
                          f"({int(np.sum(values != want_values))} differ)")

    if errors:
        for e in errors:
            print(f"{path}: {e}", file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(want_keys)} keys, {len(want_names)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
