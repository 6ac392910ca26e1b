import torch

from vistok.pipelines.sampling import filter_top_k, filter_top_p, filter_top_p_ascending


def test_top_k_keeps_the_k_largest_per_row():
    logits = torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(0))
    kept = torch.isfinite(filter_top_k(logits.clone(), 7))
    assert (kept.sum(-1) == 7).all()
    assert torch.equal(kept, torch.zeros_like(kept).scatter(-1, logits.topk(7, dim=-1).indices, True))
    assert torch.equal(filter_top_k(logits.clone(), 0), logits)


def test_top_p_filters_keep_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.25, 0.15, 0.1]])
    logits = probs.log()
    # transformers/LlamaGen: keep tokens until the cumulative probability exceeds p, including the crossing one
    assert torch.isfinite(filter_top_p(logits.clone(), 0.6)).tolist() == [[True, True, False, False]]
    # VAR: drop the tail whose cumulative probability is <= 1 - p
    assert torch.isfinite(filter_top_p_ascending(logits.clone(), 0.6)).tolist() == [[True, True, False, False]]
    # the most likely token always survives
    assert torch.isfinite(filter_top_p(logits.clone(), 1e-6)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_top_p_ascending(logits.clone(), 1e-6)).tolist() == [[True, False, False, False]]
    assert torch.equal(filter_top_p(logits.clone(), 1.0), logits)
    assert torch.equal(filter_top_p_ascending(logits.clone(), 0.0), logits)
