"""A stand-in for the v1 API of one `visualize` job, serving the pages blueprint beside it, for
the job page's test until that kind runs on the real stack. It answers in the shapes the
visualize issue fixes (items with one `visualize` output: `png`, `npy`, `snapshots`, `curve`;
the report's `items` with each objective curve), and the job moves only when the test calls
`advance`, so the test sees each state for certain.
"""

from __future__ import annotations

import io
import json
import threading

from flask import Flask, Response, jsonify
from PIL import Image
from werkzeug.serving import make_server

from api import pages

JOB_ID = "0123456789abcdef0123456789abcdef"
OBJECTIVES = [{"class": 3}, {"layer": "layer1", "channel": 5}]
STEPS, SNAPSHOT_EVERY = 8, 2


def curve(item: int, steps: int) -> list[float]:
    return [round((item + 1) * (1 - 0.8 ** (s + 1)), 4) for s in range(steps)]


class VisualizeStub:
    """The job's state (`step`), and the URLs it gives out."""

    def __init__(self) -> None:
        self.step = 0
        self.url = ""

    def advance(self, steps: int) -> None:
        self.step = min(STEPS, self.step + steps)

    @property
    def final(self) -> bool:
        return self.step == STEPS

    def snapshots(self, item: int) -> list[str]:
        return [f"{self.url}/stub/{item}/{s}.png" for s in range(SNAPSHOT_EVERY, self.step + 1,
                                                                 SNAPSHOT_EVERY)]

    def job(self) -> dict:
        items = len(OBJECTIVES)
        return {"id": JOB_ID, "kind": "visualize", "model": "stub-model",
                "status": "succeeded" if self.final else "running",
                "objective": OBJECTIVES, "starts": 1, "steps": STEPS,
                "progress": {"total": STEPS * items, "done": self.step * items, "failed": 0,
                             "planning": False, "finalizing": False},
                "error": None}

    def item(self, index: int) -> dict:
        outputs = []
        if self.step:
            outputs.append({
                "method": "visualize", "png": f"{self.url}/stub/{index}/{self.step}.png",
                "npy": f"{self.url}/stub/{index}/{self.step}.npy",
                "snapshots": self.snapshots(index),
                "curve": f"{self.url}/stub/{index}/curve.json?step={self.step}"})
        return {"index": index, "input": None, "status": "succeeded" if self.final else "running",
                "error": None, "prediction": None, "outputs": outputs, "worker": None}

    def report(self) -> dict:
        return {"kind": "visualize", "items": [
            {"index": i, "objective": o, "start": 0, "curve": curve(i, STEPS),
             "png": f"{self.url}/stub/{i}/{STEPS}.png"} for i, o in enumerate(OBJECTIVES)]}


def _png(item: int, step: int) -> bytes:
    colour = (40 + 25 * step, 90 + 60 * item, 200 - 20 * step)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="PNG")
    return buf.getvalue()


def make_app(stub: VisualizeStub) -> Flask:
    app = Flask("visualize-stub")
    pages.init_app(app)

    @app.get(f"/v1/jobs/{JOB_ID}")
    def job():
        return jsonify(stub.job())

    @app.get(f"/v1/jobs/{JOB_ID}/items")
    def items():
        return jsonify({"items": [stub.item(i) for i in range(len(OBJECTIVES))],
                        "next_cursor": None})

    @app.get(f"/v1/jobs/{JOB_ID}/report")
    def report():
        if not stub.final:
            return jsonify({"error": {"code": "not_ready", "message": "not final"}}), 409
        return jsonify(stub.report())

    @app.get("/v1/models/stub-model")
    def model():
        return jsonify({"name": "stub-model", "class_names": [f"class-{i}" for i in range(10)]})

    @app.get("/stub/<int:item>/<int:step>.png")
    def picture(item: int, step: int):
        return Response(_png(item, step), mimetype="image/png")

    @app.get("/stub/<int:item>/curve.json")
    def curve_file(item: int):
        return Response(json.dumps(curve(item, stub.step)), mimetype="application/json")

    return app


class StubServer:
    """The stub served on a free loopback port in a thread."""

    def __init__(self, stub: VisualizeStub) -> None:
        self._server = make_server("127.0.0.1", 0, make_app(stub), threaded=True)
        stub.url = f"http://127.0.0.1:{self._server.server_port}"
        self.url = stub.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()
