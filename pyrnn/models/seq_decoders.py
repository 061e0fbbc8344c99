"""Vec2Seq (a vector to a token sequence) and EncoderDecoder (a token sequence to another,
with optional attention): teacher forcing in training, greedy decoding and beam search in
generation."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..losses import log_softmax
from ..nn import Dropout, Embedding, Linear, Tanh
from ._base import (Batch, Model, backward_recurrent, cell_config, child_seed, has_cell_state,
                    has_hidden_state, make_recurrent, num_directions, output_size, pad_sequences, run_recurrent,
                    sequence_mask, state_from_hidden, step_recurrent, zero_state)
from .attention import KINDS, Attention
from .decoding import beam_search, greedy_decode, sample_next


def _select_state(state: dict[str, Any], index: np.ndarray) -> dict[str, Any]:
    """Rows ``index`` of a decoding state: recurrent states have the batch on axis 1, the rest on axis 0."""
    out = {}
    for key, value in state.items():
        if key == "rnn":
            out[key] = tuple(np.ascontiguousarray(s[:, index]) for s in value)
        elif value is None:
            out[key] = None
        else:
            out[key] = np.ascontiguousarray(value[index])
    return out


class _TokenDecoder(Model):
    """Shared by Vec2Seq and EncoderDecoder: token bookkeeping, collate, generation."""

    def _setup_tokens(self, pad_id: int, bos_id: int, eos_id: int, vocab: int) -> None:
        for name, v in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= v < vocab:
                raise ValueError(f"{name} must be in 0..{vocab - 1} (a token of the target vocabulary), got {v}")
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)

    def teacher_forcing(self, targets: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Target token lists (without BOS/EOS) as decoder inputs ``[BOS] + y``, decoder targets
        ``y + [EOS]`` (both right-padded with ``pad_id``) and their lengths."""
        seqs = [np.asarray(t, np.int64).reshape(-1) for t in targets]
        tgt_in, lengths = pad_sequences([np.concatenate([[self.bos_id], s]) for s in seqs], self.pad_id)
        tgt_out, _ = pad_sequences([np.concatenate([s, [self.eos_id]]) for s in seqs], self.pad_id)
        return tgt_in, tgt_out, lengths

    def _decoder_step(self, tokens: np.ndarray, state: dict[str, Any]):
        raise NotImplementedError

    def _start(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], int]:
        raise NotImplementedError

    def _generate(self, start_args: tuple, start_kwargs: dict, max_len: int, beam_width: int,
                  length_penalty: float, return_attention: bool, temperature: float = 0.0,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None):
        sampling = temperature > 0
        if sampling and beam_width != 1:
            raise ValueError("sampling (temperature > 0) draws one sequence: use beam_width=1")
        if not sampling and (top_k is not None or top_p is not None):
            raise ValueError("top_k and top_p restrict sampling: give a temperature > 0 with them")
        rng = np.random.default_rng(seed)

        def pick(logp):
            return sample_next(logp, temperature, top_k, top_p, rng)

        def run():
            state, B = self._start(*start_args, **start_kwargs)
            attention: list[np.ndarray] = []

            def step(tokens, st):
                logp, st, a = self._decoder_step(tokens, st)
                if return_attention and a is not None:
                    attention.append(a)
                return logp, st

            if beam_width == 1:
                toks, scores = greedy_decode(step, state, B, self.bos_id, self.eos_id, max_len,
                                             pick if sampling else None)
            else:
                if return_attention:
                    raise ValueError("return_attention is available with greedy decoding (beam_width=1)")
                toks, scores = beam_search(step, state, _select_state, B, self.bos_id, self.eos_id,
                                           max_len, beam_width, length_penalty)
            if return_attention:
                weights = np.stack(attention, axis=1) if attention else None  # (B, steps, Ts)
                return toks, weights
            return toks
        return self._in_eval(run)


class Vec2Seq(_TokenDecoder):
    """A vector conditions a recurrent decoder that generates tokens (e.g. a caption from an
    image embedding). ``condition``: ``"init"`` (the vector sets the initial hidden state through
    Linear + tanh), ``"input"`` (fed with every step's input) or ``"both"``.

    ``logits = model(v, tgt_in, tgt_lengths=None)``: v (B, vector_size), tgt_in (B, T) tokens
    starting with BOS; logits (B, T, vocab_size). ``model.generate(v, max_len, beam_width=1)``.
    """

    def __init__(self, vector_size: int, vocab_size: int, hidden_size: int = 64, embedding_dim: int | None = None,
                 cell: str = "lstm", num_layers: int = 1, condition: str = "both", pad_id: int = 0,
                 bos_id: int = 1, eos_id: int = 2, dropout: float = 0.0, dtype: Any = "float32",
                 seed: int | None = None) -> None:
        config = dict(vector_size=vector_size, vocab_size=vocab_size, hidden_size=hidden_size,
                      embedding_dim=embedding_dim, cell=cell, num_layers=num_layers, condition=condition,
                      pad_id=pad_id, bos_id=bos_id, eos_id=eos_id, dropout=dropout, seed=seed)
        super().__init__(dict(config, cell=cell_config(cell)), dtype)
        self.vector_size = _checks.positive_int(vector_size, "vector_size")
        self.vocab_size = _checks.positive_int(vocab_size, "vocab_size")
        self.hidden_size = H = _checks.positive_int(hidden_size, "hidden_size")
        self.num_layers = L = _checks.positive_int(num_layers, "num_layers")
        self.condition = _checks.choice(condition, "condition", ("init", "input", "both"))
        self._setup_tokens(pad_id, bos_id, eos_id, self.vocab_size)
        E = embedding_dim or H
        self.embedding = Embedding(vocab_size, E, padding_idx=pad_id, dtype=dtype, seed=child_seed(seed, 1))
        self.feed = self.condition in ("input", "both")
        self.decoder = make_recurrent(cell, E + (vector_size if self.feed else 0), H, L, False,
                                      dropout if L > 1 else 0.0, dtype, child_seed(seed, 2))
        self.hidden_size = H = output_size(self.decoder)      # a layer instance brings its own sizes
        self.num_layers = L = self.decoder.num_layers
        if not isinstance(cell, str):
            self.config.update(hidden_size=self.decoder.hidden_size, num_layers=L)
        if self.condition in ("init", "both") and not has_hidden_state(self.decoder):
            raise ValueError(f"condition={condition!r} sets the decoder's initial hidden state, which an mLSTM "
                             "(a matrix memory) does not have: use condition='input'")
        if self.condition in ("init", "both"):
            self.bridge = Linear(vector_size, L * H, dtype=dtype, seed=child_seed(seed, 3))
            self.bridge_act = Tanh(dtype=dtype)
        else:
            self.bridge = None
        self.drop = Dropout(dropout, dtype=dtype, seed=child_seed(seed, 4))
        self.out = Linear(H, vocab_size, dtype=dtype, seed=child_seed(seed, 5))
        self._cache = None

    def _initial_state(self, v: np.ndarray):
        if self.bridge is None:
            return None
        B = v.shape[0]
        h0 = self.bridge_act(self.bridge(v)).reshape(B, self.num_layers, self.hidden_size).transpose(1, 0, 2)
        return state_from_hidden(self.decoder, np.ascontiguousarray(h0))

    def _decoder_input(self, tokens: np.ndarray, v: np.ndarray) -> np.ndarray:
        e = self.embedding(tokens)
        if self.feed:
            e = np.concatenate([e, np.broadcast_to(v[:, None, :], e.shape[:2] + (v.shape[1],))], axis=2)
        return e

    def __call__(self, v: Any, tgt_in: Any, tgt_lengths: Any = None) -> np.ndarray:
        v = _checks.float_array(v, "v", self.dtype)
        _checks.expect_shape(v, "v", (v.shape[0], self.vector_size), "(B, vector_size)")
        tgt_in = np.asarray(tgt_in)
        y, _ = run_recurrent(self.decoder, self._decoder_input(tgt_in, v), self._initial_state(v), tgt_lengths)
        self._cache = v.shape if self.training else None
        return self.out(self.drop(y))

    def backward(self, dlogits: Any) -> np.ndarray:
        """Backpropagate dL/dlogits (B, T, vocab_size); returns dL/dv (B, vector_size)."""
        vshape = self._need_cache(self._cache)
        self._cache = None
        dy = self.drop.backward(self.out.backward(dlogits))
        din, dstate = backward_recurrent(self.decoder, dy, None)
        E = self.embedding.embedding_dim
        self.embedding.backward(np.ascontiguousarray(din[..., :E]))
        dv = np.zeros(vshape, self.dtype)
        if self.feed:
            dv += din[..., E:].sum(axis=1)
        if self.bridge is not None:
            dh0 = dstate[0].transpose(1, 0, 2).reshape(vshape[0], -1)
            dv += self.bridge.backward(self.bridge_act.backward(dh0))
        return dv

    def collate(self, inputs: Any, targets: Any) -> Batch:
        v = np.asarray(inputs, self.dtype)
        tgt_in, tgt_out, lengths = self.teacher_forcing(targets)
        return Batch({"v": v, "tgt_in": tgt_in, "tgt_lengths": lengths}, tgt_out,
                     sequence_mask(lengths, tgt_in.shape[1]), len(v))

    def _start(self, v: Any):
        v = _checks.float_array(v, "v", self.dtype)
        _checks.expect_shape(v, "v", (v.shape[0], self.vector_size), "(B, vector_size)")
        st = self._initial_state(v)
        return {"rnn": zero_state(self.decoder, v.shape[0]) if st is None else st, "v": v}, v.shape[0]

    def _decoder_step(self, tokens: np.ndarray, state: dict[str, Any]):
        x = self._decoder_input(tokens[:, None], state["v"])[:, 0]
        y, st = step_recurrent(self.decoder, x, state["rnn"])
        logits = self.out(y)
        return log_softmax(logits), dict(state, rnn=st), None

    def generate(self, v: Any, max_len: int = 50, beam_width: int = 1, length_penalty: float = 0.0,
                 temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None):
        """Token lists (without BOS/EOS) for each vector: greedy (beam_width 1, temperature 0),
        beam search (beam_width > 1) or sampling (temperature > 0 with optional top_k / top_p,
        from ``default_rng(seed)``), on the decoder's streaming step kernel."""
        return self._generate((v,), {}, max_len, beam_width, length_penalty, False, temperature, top_k,
                              top_p, seed)


class EncoderDecoder(_TokenDecoder):
    """Sequence to sequence of another length (translation-like): a recurrent encoder (optionally
    bidirectional, stacked) reads the source; its final states, through Linear + tanh, start a
    recurrent decoder that is trained with teacher forcing.

    ``attention`` (None, ``"dot"``, ``"general"``, ``"bahdanau"``): Luong-style global attention
    on the decoder outputs: scores against every encoder output, ``context = weights @ keys``,
    ``h~ = tanh(W_c [context; s_t])`` feeds the output layer. ``"bahdanau"`` uses Bahdanau's
    additive score in that same position, so a teacher-forced decoder runs as one native
    layer call over the whole target. ``model.attention_weights`` holds the last forward's
    weights (B, T_tgt, T_src).

    ``logits = model(src, tgt_in, src_lengths=None, tgt_lengths=None)``;
    ``model.generate(src, src_lengths=None, max_len=50, beam_width=1, length_penalty=0.0)``.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, hidden_size: int = 64,
                 embedding_dim: int | None = None, cell: str = "lstm", num_layers: int = 1,
                 bidirectional: bool = True, attention: str | None = "general",
                 attention_size: int | None = None, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2,
                 dropout: float = 0.0, dtype: Any = "float32", seed: int | None = None) -> None:
        config = dict(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, hidden_size=hidden_size,
                      embedding_dim=embedding_dim, cell=cell, num_layers=num_layers,
                      bidirectional=bidirectional, attention=attention, attention_size=attention_size,
                      pad_id=pad_id, bos_id=bos_id, eos_id=eos_id, dropout=dropout, seed=seed)
        super().__init__(dict(config, cell=cell_config(cell)), dtype)
        self.src_vocab_size = _checks.positive_int(src_vocab_size, "src_vocab_size")
        self.tgt_vocab_size = _checks.positive_int(tgt_vocab_size, "tgt_vocab_size")
        H = self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        L = self.num_layers = _checks.positive_int(num_layers, "num_layers")
        if attention is not None:
            _checks.choice(attention, "attention", KINDS)
        self.attention_kind = attention
        self._setup_tokens(pad_id, bos_id, eos_id, self.tgt_vocab_size)
        E = embedding_dim or H
        D = 2 if bidirectional else 1
        inter = dropout if L > 1 else 0.0
        self.src_embedding = Embedding(src_vocab_size, E, padding_idx=pad_id, dtype=dtype, seed=child_seed(seed, 1))
        self.encoder = make_recurrent(cell, E, H, L, bool(bidirectional), inter, dtype, child_seed(seed, 2))
        self.tgt_embedding = Embedding(tgt_vocab_size, E, padding_idx=pad_id, dtype=dtype, seed=child_seed(seed, 3))
        if not isinstance(cell, str):
            raise ValueError("EncoderDecoder builds an encoder and a decoder of one kind: give cell as a name")
        self.decoder = make_recurrent(cell, E, H, L, False, inter, dtype, child_seed(seed, 4))
        D = num_directions(self.encoder)
        self.key_size = D * output_size(self.encoder)
        # The bridge turns the encoder's final hidden (and LSTM cell) states into the decoder's
        # initial ones; an mLSTM has no hidden state, so it starts from zeros and reads the
        # source through attention only.
        self.bridged = has_hidden_state(self.encoder)
        if not self.bridged and attention is None:
            raise ValueError("cell='mlstm' has no hidden state to carry the source to the decoder: give an "
                             "attention ('dot', 'general' or 'bahdanau')")
        self.bridge_h = Linear(D * H, H, dtype=dtype, seed=child_seed(seed, 5)) if self.bridged else None
        self.bridge_act = Tanh(dtype=dtype)
        self.bridge_c = (Linear(D * H, H, dtype=dtype, seed=child_seed(seed, 6))
                         if has_cell_state(self.decoder) else None)
        if attention is not None:
            self.attention = Attention(attention, H, D * H, attention_size, dtype=dtype, seed=child_seed(seed, 7))
            self.combine = Linear(D * H + H, H, bias=False, dtype=dtype, seed=child_seed(seed, 8))
            self.combine_act = Tanh(dtype=dtype)
        else:
            self.attention = None
        self.drop = Dropout(dropout, dtype=dtype, seed=child_seed(seed, 9))
        self.out = Linear(H, tgt_vocab_size, dtype=dtype, seed=child_seed(seed, 10))
        self.attention_weights: np.ndarray | None = None
        self._cache = None

    # -- pieces ---------------------------------------------------------------------------------

    def _encode(self, src: Any, src_lengths: Any):
        src = np.asarray(src)
        if src.ndim != 2:
            raise ValueError(f"src: expected token ids (B, T_src), got shape {_checks.shape_str(src.shape)}")
        keys, st = run_recurrent(self.encoder, self.src_embedding(src), None, src_lengths)
        B, Ts = src.shape
        mask = None if src_lengths is None else sequence_mask(np.asarray(src_lengths).reshape(B), Ts)
        self._encoder_state = st
        return keys, mask, self._bridge(st)

    def _bridge(self, st: tuple) -> tuple:
        if not self.bridged:
            return zero_state(self.decoder, st[0].shape[1])
        L, D, H = self.num_layers, num_directions(self.encoder), self.hidden_size
        B = st[0].shape[1]
        n = 2 if self.bridge_c is not None else 1
        cat = [np.ascontiguousarray(s.reshape(L, D, B, H).transpose(0, 2, 1, 3).reshape(L, B, D * H))
               for s in st[:n]]
        h0 = self.bridge_act(self.bridge_h(cat[0]))
        return state_from_hidden(self.decoder, h0, None if n == 1 else self.bridge_c(cat[1]))

    def _bridge_backward(self, dstate: tuple, encoder_state: tuple) -> tuple | None:
        """The gradient of the encoder's final state (a tuple like it) from the decoder's initial one."""
        if not self.bridged:
            return None
        L, D, H = self.num_layers, num_directions(self.encoder), self.hidden_size
        grads = [self.bridge_h.backward(self.bridge_act.backward(dstate[0]))]
        if self.bridge_c is not None:
            grads.append(self.bridge_c.backward(dstate[1]))
        B = dstate[0].shape[1]
        grads = [np.ascontiguousarray(g.reshape(L, B, D, H).transpose(0, 2, 1, 3).reshape(L * D, B, H))
                 for g in grads]
        return tuple(grads) + tuple(np.zeros_like(s) for s in encoder_state[len(grads):])

    def _head(self, s: np.ndarray, keys: np.ndarray, mask: Any):
        if self.attention is None:
            return self.out(self.drop(s)), None
        ctx, a = self.attention(s, keys, mask)
        h = self.combine_act(self.combine(np.concatenate([ctx, s], axis=-1)))
        return self.out(self.drop(h)), a

    # -- training -------------------------------------------------------------------------------

    def __call__(self, src: Any, tgt_in: Any, src_lengths: Any = None, tgt_lengths: Any = None) -> np.ndarray:
        keys, mask, st = self._encode(src, src_lengths)
        s, _ = run_recurrent(self.decoder, self.tgt_embedding(np.asarray(tgt_in)), st, tgt_lengths)
        logits, a = self._head(s, keys, mask)
        self.attention_weights = a
        self._cache = (keys.shape, self._encoder_state) if self.training else None
        return logits

    def backward(self, dlogits: Any) -> None:
        """Backpropagate dL/dlogits (B, T_tgt, tgt_vocab_size) through decoder, attention, bridge
        and encoder into ``grads``. Token inputs have no gradient: returns None."""
        keys_shape, encoder_state = self._need_cache(self._cache)
        self._cache = None
        dh = self.drop.backward(self.out.backward(dlogits))
        if self.attention is not None:
            dcat = self.combine.backward(self.combine_act.backward(dh))
            F = self.key_size
            dq, dkeys = self.attention.backward(np.ascontiguousarray(dcat[..., :F]))
            ds = dcat[..., F:] + dq
        else:
            ds, dkeys = dh, np.zeros(keys_shape, self.dtype)
        demb, dstate = backward_recurrent(self.decoder, ds, None)
        self.tgt_embedding.backward(demb)
        dsrc, _ = backward_recurrent(self.encoder, dkeys, self._bridge_backward(dstate, encoder_state))
        self.src_embedding.backward(dsrc)
        return None

    def collate(self, inputs: Any, targets: Any) -> Batch:
        src, src_lengths = pad_sequences([np.asarray(s, np.int64).reshape(-1) for s in inputs], self.pad_id)
        tgt_in, tgt_out, lengths = self.teacher_forcing(targets)
        return Batch({"src": src, "tgt_in": tgt_in, "src_lengths": src_lengths, "tgt_lengths": lengths},
                     tgt_out, sequence_mask(lengths, tgt_in.shape[1]), len(src))

    # -- generation -----------------------------------------------------------------------------

    def _start(self, src: Any, src_lengths: Any = None):
        if not (isinstance(src, np.ndarray) and src.ndim == 2):
            src, src_lengths = pad_sequences([np.asarray(s, np.int64).reshape(-1) for s in src], self.pad_id)
        keys, mask, st = self._encode(src, src_lengths)
        if mask is None:
            mask = np.ones(keys.shape[:2], bool)
        return {"rnn": st, "keys": keys, "mask": mask}, keys.shape[0]

    def _decoder_step(self, tokens: np.ndarray, state: dict[str, Any]):
        s, st = step_recurrent(self.decoder, self.tgt_embedding(tokens), state["rnn"])
        logits, a = self._head(s[:, None], state["keys"], state["mask"])
        return log_softmax(logits[:, 0]), dict(state, rnn=st), (None if a is None else a[:, 0])

    def generate(self, src: Any, src_lengths: Any = None, max_len: int = 50, beam_width: int = 1,
                 length_penalty: float = 0.0, return_attention: bool = False, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None):
        """Token lists (without BOS/EOS) for each source: greedy (beam_width 1, temperature 0),
        beam search (beam_width > 1) or sampling (temperature > 0, optional top_k / top_p, from
        ``default_rng(seed)``). ``src``: padded ids (B, T_src) with ``src_lengths``, or a list of
        token lists. With ``return_attention`` (beam_width 1) also the weights (B, steps, T_src)."""
        return self._generate((src, src_lengths), {}, max_len, beam_width, length_penalty, return_attention,
                              temperature, top_k, top_p, seed)
