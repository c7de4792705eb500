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


def test_a_request_joins_a_running_batch_and_leaves_first(tiny_llama):
    """Continuous batching: a short request arriving while a long one is being written joins it
    between two steps and returns long before the long one ends; both answer as if alone."""
    import time

    from mrepe_core.models import decoder_layers

    vec = random_vector(tiny_llama, seed=6)
    texts = chat_texts(tiny_llama)
    long_alone = runner.generate(tiny_llama, [texts[0]], vec, [1, 2], [1.5], 40)
    short_alone = runner.generate(tiny_llama, [texts[1]], vec, [1, 2], [-2.0], 3)
    block = decoder_layers(tiny_llama.model)[0]
    slow = block.register_forward_pre_hook(lambda *a: time.sleep(0.02))  # ~20 ms a step, for timing
    try:
        batcher = GenerationBatcher(wait_s=0.0)
        finished = {}

        def visit(name, text, c, n):
            finished[name] = (batcher.generate(tiny_llama, [text], vec, [1, 2], [c], n), time.perf_counter())

        first = threading.Thread(target=visit, args=("long", texts[0], 1.5, 40))
        first.start()
        time.sleep(0.15)
        visit("short", texts[1], -2.0, 3)
        first.join(timeout=60)
    finally:
        slow.remove()
    assert finished["long"][0] == long_alone and finished["short"][0] == short_alone
    assert finished["short"][1] < finished["long"][1] - 0.2  # it did not wait for the long answer
