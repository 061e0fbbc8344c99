"""Greedy decoding and beam search over any step function.

``step(tokens, state) -> (log_probs, state)``: tokens (N,) int, log_probs (N, V) normalised
log-probabilities of the next token. ``select(state, index) -> state``: the state of rows
``index`` (beam search reorders and duplicates rows with it).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

Step = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]


def greedy_decode(step: Step, state: Any, batch_size: int, bos: int, eos: int | None,
                  max_len: int, pick: Callable[[np.ndarray], np.ndarray] | None = None
                  ) -> tuple[list[list[int]], np.ndarray]:
    """Pick the most likely token at every step (or ``pick(log_probs)``'s choice, e.g. a
    :func:`sample_next` draw), for the whole batch at once. Returns the token lists (without
    BOS and EOS) and their total log-probabilities (B,)."""
    tokens = np.full(batch_size, bos, np.int64)
    out = np.zeros((batch_size, max_len), np.int64)
    done = np.zeros(batch_size, bool)
    lengths = np.full(batch_size, max_len)
    scores = np.zeros(batch_size)
    for t in range(max_len):
        logp, state = step(tokens, state)
        tokens = np.argmax(logp, axis=-1) if pick is None else pick(logp)
        scores += np.where(done, 0.0, logp[np.arange(batch_size), tokens])
        out[:, t] = tokens
        if eos is not None:
            newly = (~done) & (tokens == eos)
            lengths[newly] = t
            done |= newly
            if done.all():
                break
    return [out[b, :lengths[b]].tolist() for b in range(batch_size)], scores


def length_normaliser(length: int, alpha: float) -> float:
    """GNMT's length penalty ((5 + length) / 6) ** alpha; alpha 0 means none."""
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


def beam_search(step: Step, state: Any, select: Callable[[Any, np.ndarray], Any], batch_size: int,
                bos: int, eos: int | None, max_len: int, beam_width: int = 4,
                length_penalty: float = 0.0) -> tuple[list[list[int]], np.ndarray]:
    """Beam search with ``beam_width`` hypotheses per example, for the whole batch at once.

    A hypothesis ends when it emits ``eos``; its score is its total log-probability divided by
    :func:`length_normaliser` of its length (EOS included). An example is done when it has
    ``beam_width`` ended hypotheses and none of its live ones can still beat the best ended
    one; at ``max_len`` the live ones count as ended. Returns the best
    token list per example (without BOS and EOS) and its normalised score. Width 1 is greedy.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    B, K = batch_size, int(beam_width)
    state = select(state, np.repeat(np.arange(B), K))
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0
    hyps = np.full((B, K, 0), bos, np.int64)
    tokens = np.full(B * K, bos, np.int64)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = np.zeros(B, bool)
    for t in range(max_len):
        logp, state = step(tokens, state)
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.reshape(B, K, V)).reshape(B, K * V)
        order = np.argsort(-cand, axis=1, kind="stable")[:, :2 * K]
        new_scores = np.full((B, K), -np.inf)
        new_rows = np.zeros((B, K), np.int64)
        new_tokens = np.full((B, K), eos if eos is not None else 0, np.int64)
        for b in range(B):
            if done[b]:
                new_rows[b] = b * K
                continue
            n = 0
            for j in order[b]:
                s = cand[b, j]
                if not np.isfinite(s):
                    break
                beam, tok = divmod(int(j), V)
                if eos is not None and tok == eos:
                    finished[b].append((s / length_normaliser(t + 1, length_penalty),
                                        hyps[b, beam].tolist()))
                    continue
                new_scores[b, n], new_rows[b, n], new_tokens[b, n] = s, b * K + beam, tok
                n += 1
                if n == K:
                    break
            if len(finished[b]) >= K:
                # Log-probabilities only fall as a hypothesis grows, so the best a live one can
                # still reach is its score now over the largest normaliser it could get.
                best_live = new_scores[b].max()
                bound = best_live / length_normaliser(max_len if length_penalty > 0 else t + 1, length_penalty)
                done[b] = max(f[0] for f in finished[b]) >= bound
        if done.all():
            break
        rows = new_rows.reshape(-1)
        hyps = np.concatenate([hyps.reshape(B * K, -1)[rows].reshape(B, K, -1), new_tokens[:, :, None]], axis=2)
        scores = new_scores
        tokens = new_tokens.reshape(-1)
        state = select(state, rows)
    else:
        for b in range(B):
            if not done[b]:
                for k in range(K):
                    if np.isfinite(scores[b, k]):
                        finished[b].append((scores[b, k] / length_normaliser(max_len, length_penalty),
                                            hyps[b, k].tolist()))
    best_tokens, best_scores = [], np.zeros(B)
    for b in range(B):
        s, toks = max(finished[b], key=lambda f: f[0])   # max keeps the first of equal scores
        best_tokens.append(toks)
        best_scores[b] = s
    return best_tokens, best_scores


def sample_next(logits: np.ndarray, temperature: float = 0.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """The next token (B,) from logits (B, V): the most likely at ``temperature`` 0, else a draw
    from softmax(logits / temperature) restricted to the ``top_k`` most likely tokens and to the
    smallest set of most likely tokens whose probability reaches ``top_p`` (nucleus sampling)."""
    logits = np.asarray(logits, np.float64)
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and not (isinstance(top_k, (int, np.integer)) and top_k >= 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    z = logits / temperature
    order = np.argsort(-z, axis=-1, kind="stable")            # most likely first
    zs = np.take_along_axis(z, order, axis=-1)
    keep = np.ones(zs.shape, bool)
    if top_k is not None:
        keep[:, int(top_k):] = False
    p = np.exp(zs - zs[:, :1])
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None:
        before = np.cumsum(p, axis=-1) - p                     # mass of the more likely tokens
        keep &= before < top_p
    p = np.where(keep, p, 0.0)
    p /= p.sum(axis=-1, keepdims=True)
    rng = rng if rng is not None else np.random.default_rng()
    u = rng.random((p.shape[0], 1))
    pick = np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), keep.sum(axis=-1) - 1)  # keep is a prefix
    return order[np.arange(p.shape[0]), pick]
