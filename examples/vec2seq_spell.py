"""Vec2Seq: a vector conditions a decoder that generates a token sequence (as a caption from an
image embedding). Here a noisy code vector for a number 0..999 is "captioned" with its digits.

    python examples/vec2seq_spell.py
"""
import numpy as np

import pyrnn

PAD, BOS, EOS, DIGIT0 = 0, 1, 2, 3
rng = np.random.default_rng(0)
codes = rng.standard_normal((1000, 16)).astype(np.float32)      # a fixed random "embedding" per number


def data(n):
    k = rng.integers(0, 1000, n)
    v = codes[k] + 0.1 * rng.standard_normal((n, 16)).astype(np.float32)
    return v, [[DIGIT0 + int(c) for c in str(i)] for i in k], k


V, Y, _ = data(20000)
Vt, Yt, kt = data(200)
model = pyrnn.Vec2Seq(vector_size=16, vocab_size=13, hidden_size=64, cell="gru", condition="both",
                      pad_id=PAD, bos_id=BOS, eos_id=EOS, seed=0)
opt = pyrnn.optim.Adam(model, lr=5e-3)
pyrnn.fit(model, (V, Y), "cross_entropy", opt, epochs=6, batch_size=64)
out = model.generate(Vt, max_len=5, beam_width=3)
print(f"exact match {np.mean([o == y for o, y in zip(out, Yt)]):.1%}")
for o, k in list(zip(out, kt))[:5]:
    print(k, "->", "".join(str(t - DIGIT0) for t in o))
