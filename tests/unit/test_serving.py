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


def test_a_batch_that_never_empties_keeps_its_cache_as_long_as_its_oldest_row(tiny_llama):
    """Under steady load the decode batch never drains: rows join and leave while it runs. Its
    cache and mask must shrink when the rows that made them long have left (a server that kept
    every column since the batch began grew to 24 GB), and the answers must not change."""
    import torch

    vec = random_vector(tiny_llama, seed=7)
    texts = chat_texts(tiny_llama)
    batch = runner.DecodeBatch(tiny_llama, vec, [1, 2])
    finished: dict = {}
    lengths = []
    n_rows = 6
    for k in range(n_rows):  # a new row joins every 5 steps; each writes 8 tokens
        coeff = torch.tensor([float(k) - 2.0])
        prefill = runner.prefill_rows(tiny_llama, [texts[k % len(texts)]], vec, [1, 2], coeff)
        finished.update(batch.merge(prefill, [k], coeff, [8]))
        for _ in range(5):
            finished.update(batch.step())
            lengths.append(batch.mask.shape[1] if len(batch) else 0)
            if len(batch):
                keys = batch.cache.layers[0].keys
                assert keys.shape[2] == batch.mask.shape[1] and keys.shape[0] == len(batch)
                assert bool(batch.mask[:, 0].any())  # no column that every row ignores
    while len(batch):
        finished.update(batch.step())
    longest_prompt = max(len(tiny_llama.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert max(lengths) <= longest_prompt + 8 + 5  # bounded by a row's life, not by the batch's age
    alone = [
        runner.generate(tiny_llama, [texts[k % len(texts)]], vec, [1, 2], [float(k) - 2.0], 8) for k in range(n_rows)
    ]
    decoded = [tiny_llama.tokenizer.decode(finished[k], skip_special_tokens=True) for k in range(n_rows)]
    assert decoded == [a[0] for a in alone]


def test_decoding_outside_inference_mode_keeps_no_autograd_graph(tiny_llama):
    """The batcher calls prefill and steps itself, outside ``runner.generate``'s inference mode: with
    a graph kept through the cache, a server's memory grew by every step's activations (OOM)."""
    import torch

    assert torch.is_grad_enabled()
    vec = random_vector(tiny_llama, seed=8)
    coeff = torch.tensor([0.0, 1.0])
    prefill = runner.prefill_rows(tiny_llama, chat_texts(tiny_llama)[:2], vec, [1, 2], coeff)
    batch = runner.DecodeBatch(tiny_llama, vec, [1, 2])
    batch.merge(prefill, [0, 1], coeff, [5, 5])
    batch.step()
    tensors = [prefill.logits, batch.cache.layers[0].keys, batch.cache.layers[-1].values]
    assert all(t.grad_fn is None and not t.requires_grad for t in tensors)
