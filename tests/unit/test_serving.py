"""Concurrent generation requests are served together and answer exactly as serial ones."""

import threading

import pytest
from tiny_models import chat_texts, random_vector

from mrepe_core import runner
from mrepe_core.limits import Cancelled
from mrepe_core.serving import GenerationBatcher


def test_concurrent_requests_share_batches_and_equal_serial_answers(tiny_llama):
    vec = random_vector(tiny_llama, seed=5)
    texts = chat_texts(tiny_llama)
    requests = [(texts[k % len(texts)], float(k % 5) - 2.0) for k in range(12)]
    serial = [runner.generate(tiny_llama, [t, t], vec, [1, 2], [0.0, c], 6) for t, c in requests]
    batcher = GenerationBatcher(max_rows=64, wait_s=0.05)
    answers: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def visit(k: int) -> None:
        t, c = requests[k]
        start.wait()
        answers[k] = batcher.generate(tiny_llama, [t, t], vec, [1, 2], [0.0, c], 6)

    threads = [threading.Thread(target=visit, args=(k,)) for k in range(len(requests))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert answers == serial
    assert batcher.batches_run < len(requests)  # requests were decoded together


def test_a_request_whose_visitor_left_is_dropped(tiny_llama):
    batcher = GenerationBatcher(wait_s=0.0)
    gone = threading.Event()
    gone.set()
    with pytest.raises(Cancelled):
        batcher.generate(tiny_llama, chat_texts(tiny_llama)[:1], None, None, [0.0], 4, cancel=gone)
    assert batcher.batches_run == 0
    assert batcher.generate(tiny_llama, chat_texts(tiny_llama)[:1], None, None, [0.0], 4)  # still serving
