"""Inference and next-sample run off the event loop: other clients are answered meanwhile, and
next sample (no network: cached scores) does not queue behind an inference."""

import threading
import time

import requests

from lib.data.phantoms.embedded import StudySpec, write_study
from tests.conftest import Server, copy_studies


def test_info_label_reads_and_next_sample_are_answered_while_a_slow_inference_runs(tmp_path):
    studies = copy_studies(tmp_path / "studies")
    # 120 slices: about 6 s to segment even where the networks run bf16 (AVX512-BF16 EPYC); with 40
    # slices the inference there ended before the seven light requests had been answered
    spec = StudySpec("thigh", 20_950, "mild", 120, (432, 432), (1.04, 1.04, 5.0))
    write_study(studies, spec)
    with Server(studies, tmp_path / "server.log", extra_args=["--conf", "auto_score_slices", "false"]) as server:
        finished = {}

        def infer():
            r = requests.post(f"{server.url}/infer/muscle", params={"image": spec.id, "output": "json"}, timeout=600)
            finished["infer"] = (time.monotonic(), r.status_code)

        worker = threading.Thread(target=infer)
        worker.start()
        time.sleep(1.0)  # let the inference start
        answers = []
        for _ in range(3):
            answers.append(requests.get(f"{server.url}/info/", timeout=600).status_code)
            label = requests.get(f"{server.url}/datastore/label", timeout=600,
                                 params={"label": "phantom_leg_s0003_severe", "tag": "final"})
            answers.append(label.status_code)
        answers.append(requests.post(f"{server.url}/activelearning/uncertain_slices", json={"n": 1},
                                     timeout=600).status_code)
        answered = time.monotonic()
        worker.join(timeout=600)
        assert answers == [200] * 7
        assert finished["infer"][1] == 200
        assert answered < finished["infer"][0], "the light requests or next sample waited for the inference"
        # the rebuilt route keeps its parameters: a bad strategy param is still a 4xx with a message
        bad = requests.post(f"{server.url}/activelearning/uncertain_slices", json={"n": 0}, timeout=600)
        assert 400 <= bad.status_code < 500 and "n must be" in bad.text
