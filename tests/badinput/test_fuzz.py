"""Property-based fuzzing of every route, generated from the API's own `/openapi.json` by
schemathesis: valid and invalid path parameters, queries, headers and bodies, a bounded number
of examples per operation. No answer is a 5xx; every error is in the one shape; and nothing is
stored (the fuzzing tenant owns no model, so no request can make a job)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from e2e.helpers import side_effects
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from badinput.helpers import check_real_job, check_worker, tally
from devstack import ROOT

FAMILY = "spec fuzzing (examples)"
EXAMPLES = 8  # per operation and mode
DOCUMENT = json.loads((ROOT / "api" / "openapi.json").read_text())
OPERATIONS = [(method, path) for path, ops in DOCUMENT["paths"].items() for method in ops
              if method in ("get", "post", "put", "patch", "delete")]


@pytest.fixture(scope="module")
def served_schema(bad):
    """The document the running API serves, as schemathesis reads it."""
    import requests

    document = requests.get(f"{bad.url}/openapi.json", timeout=10).json()
    assert document == DOCUMENT
    return schemathesis.openapi.from_dict(document)


def _has_inputs(operation) -> bool:
    return bool(operation.path_parameters or operation.query or operation.headers
                or operation.body)


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_get_no_5xx_and_errors_in_the_shape(bad, served_schema, worker,
                                                             method, path):
    operation = served_schema[path][method]
    key = {"Authorization": f"Bearer {bad.keys['fuzz']}"}
    problems: list[str] = []
    examples = [0]

    def check(case) -> None:
        examples[0] += 1
        response = case.call(base_url=bad.url, headers=key, timeout=30)
        where = f"{case.as_curl_command()[:400]} -> {response.status_code} {response.text[:200]}"
        if response.status_code >= 500:
            problems.append(where)
        elif response.status_code >= 400:
            try:
                body = response.json()
                shaped = set(body) == {"error"} and set(body["error"]) == {"code", "message"}
            except ValueError:
                shaped = False
            if not shaped:
                problems.append(where)

    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if _has_inputs(operation)
                                         else [])
    before = side_effects(bad)
    for mode in modes:
        run = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                       suppress_health_check=list(HealthCheck),
                       phases=[Phase.explicit, Phase.generate])(
            given(case=operation.as_strategy(generation_mode=mode))(check))
        run()
    assert not problems, "\n".join(problems[:5])
    assert side_effects(bad) == before
    check_worker(bad, worker)
    tally(FAMILY, examples[0])


def test_after_fuzzing_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model, reference,
                                                            worker):
    check_real_job(bad, mallory, bad_model, reference, worker)
