"""Readiness while storage stalls: a TCP proxy in front of the S3 server stops forwarding
(connections accepted, never answered). However many probes come at once, `/readyz` answers
within 2 s (the one that starts a round of checks waits that long at most; the others answer
the last round's result at once), soon `503` naming storage for all, and a route that needs
only Redis (`GET /v1/models`) does not wait behind them: the storage check runs on a thread
of its own, with one attempt and short timeouts. Once storage answers again, so does
`/readyz`: `200`.

The client's timeouts below are four times the promised bound; before the checks had a thread
of their own, each probe held one of the API's four threads through the storage client's
retries (about 20 s), and everything else queued behind them.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests
from waiting import wait_until

PROBES = 12  # three times the API's threads
ANSWER_S = 8  # the client gives up after this: four times the 2 s bound


def _timed(url: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = requests.get(url, timeout=ANSWER_S)
    return response.status_code, response.json(), time.monotonic() - started


def test_readyz_answers_at_once_and_holds_no_route_while_storage_stalls(make_stack, figures):
    stack = make_stack(workers=0, s3=True)
    assert requests.get(f"{stack.url}/readyz", timeout=ANSWER_S).json() == {"status": "ready"}
    rounds: list[tuple[tuple, list[tuple]]] = []  # (GET /v1/models, the probes' answers)

    def a_round() -> bool:
        """PROBES probes at once, and the models meanwhile; whether every probe saw the
        stall (a round's result serves a few seconds, and while a round runs the probes
        that did not start it answer the last one's)."""
        with ThreadPoolExecutor(PROBES) as pool:
            probes = [pool.submit(_timed, f"{stack.url}/readyz") for _ in range(PROBES)]
            models = _timed(f"{stack.url}/v1/models")
            rounds.append((models, [probe.result() for probe in probes]))
        return all(status == 503 for status, _, _ in rounds[-1][1])

    stack.proxy.pause()
    try:
        wait_until("every probe seeing the stall", a_round, timeout=60, every=0.2)
    finally:
        stack.proxy.resume()
    ready = wait_until("ready again", lambda: requests.get(
        f"{stack.url}/readyz", timeout=ANSWER_S).status_code == 200, timeout=60, every=0.5)
    answers = [answer for _, round_answers in rounds for answer in round_answers]
    figures(case="storage stalled: concurrent /readyz", probes=PROBES, rounds=len(rounds),
            slowest_readyz_s=round(max(a[2] for a in answers), 2),
            slowest_models_s=round(max(models[2] for models, _ in rounds), 2))
    for models, _ in rounds:
        assert models[:2] == (200, {"models": []})
    stalled = [body for status, body, _ in answers if status != 200]
    for body in stalled:
        assert body["error"]["code"] == "unavailable"
        assert body["error"]["message"].startswith("storage: "), body
    assert ready
