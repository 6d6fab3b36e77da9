"""Inference and next-sample run off the event loop: other clients are answered meanwhile."""

import threading
import time

import requests

from lib.data.phantoms.embedded import StudySpec, write_study
from tests.conftest import Server, copy_studies


def test_info_and_label_reads_are_answered_while_a_slow_next_sample_runs(tmp_path):
    studies = copy_studies(tmp_path / "studies")
    write_study(studies, StudySpec("thigh", 20_950, "mild", 40, (432, 432), (1.04, 1.04, 5.0)))  # slow to score
    with Server(studies, tmp_path / "server.log") as server:
        finished = {}

        def next_sample():  # uncached slice scores of every image: many seconds of network work
            r = requests.post(f"{server.url}/activelearning/uncertain_slices", json={"n": 1}, timeout=600)
            finished["next_sample"] = (time.monotonic(), r.status_code)

        worker = threading.Thread(target=next_sample)
        worker.start()
        time.sleep(2.0)  # let the strategy start
        answers = []
        for _ in range(3):
            answers.append(requests.get(f"{server.url}/info/", timeout=600).status_code)
            label = requests.get(f"{server.url}/datastore/label", timeout=600,
                                 params={"label": "phantom_leg_s0003_severe", "tag": "final"})
            answers.append(label.status_code)
        answered = time.monotonic()
        worker.join(timeout=600)
        assert answers == [200] * 6
        assert finished["next_sample"][1] == 200
        assert answered < finished["next_sample"][0], "the light requests waited for the strategy"
        # the rebuilt route keeps its parameters: a bad strategy param is still a 4xx with a message
        bad = requests.post(f"{server.url}/activelearning/uncertain_slices", json={"n": 0}, timeout=600)
        assert 400 <= bad.status_code < 500 and "n must be" in bad.text
