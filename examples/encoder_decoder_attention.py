"""EncoderDecoder with attention: reverse digit strings, then inspect the attention and compare
greedy decoding with beam search; save and reload the model (safetensors).

    python examples/encoder_decoder_attention.py [dot|general|bahdanau]
"""
import sys

import numpy as np

import pyrnn
from pyrnn.demo.tasks import DIGIT_VOCAB, digit_reversal, tokens_to_digits

attention = sys.argv[1] if len(sys.argv) > 1 else "bahdanau"
rng = np.random.default_rng(0)
X, Y = digit_reversal(10000, rng, 3, 10)
Xt, Yt = digit_reversal(500, rng, 3, 10)

model = pyrnn.EncoderDecoder(DIGIT_VOCAB, DIGIT_VOCAB, hidden_size=64, embedding_dim=16, cell="lstm",
                             bidirectional=attention != "dot", attention=attention, seed=0)
opt = pyrnn.optim.Adam(model, lr=5e-3)
pyrnn.fit(model, (X, Y), "cross_entropy", opt, epochs=5, batch_size=64, clip_grad_norm=1.0,
          validation_data=(Xt, Yt), metrics=["accuracy"])

greedy = model.generate(Xt, max_len=12)
beam = model.generate(Xt, max_len=12, beam_width=4, length_penalty=0.6)
for name, out in (("greedy", greedy), ("beam 4", beam)):
    print(f"{name}: exact match {np.mean([o == list(y) for o, y in zip(out, Yt)]):.1%}")
tokens, weights = model.generate(Xt[:1], max_len=12, return_attention=True)
print(tokens_to_digits(Xt[0]), "->", tokens_to_digits(tokens[0]))
print(np.round(weights[0, :, :len(Xt[0])], 2))      # output step x input position

pyrnn.save(model, "reverse.safetensors")
assert pyrnn.load("reverse.safetensors").generate(Xt[:5], max_len=12) == greedy[:5]
