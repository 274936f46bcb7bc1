"""A decoding worker process of the image-folder source (`pyconvnet.data.images.DecoderPool`).

Run as ``python -m pyconvnet.data._decoder``. Reads one JSON request per line on stdin:
``{"path": file, "shape": [n, 3, S, S], "start": i, "files": [...]}``, decodes ``files`` into rows
``start``... of the uint8 array of that shape kept in the memory-mapped ``file``, and answers one line on
stdout: ``{"ok": true}`` or ``{"error": "<one-line message>"}``. Stops at the end of stdin.
"""
from __future__ import annotations

import json
import sys


def serve(inp, out) -> None:
    import numpy as np

    from .images import decode
    from .provider import DataError

    for line in inp:
        req = json.loads(line)
        try:
            rows = np.memmap(req["path"], np.uint8, "r+", shape=tuple(req["shape"]))
            size = rows.shape[-1]
            for j, f in enumerate(req["files"]):
                rows[req["start"] + j] = decode(f, size)
            del rows
            reply = {"ok": True}
        except DataError as e:
            reply = {"error": str(e)}
        except Exception as e:  # anything else still answers, so the parent never waits forever
            reply = {"error": f"images: decoding worker: {type(e).__name__}: {e}".splitlines()[0]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
