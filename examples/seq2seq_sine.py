"""Seq2Seq (synchronous): one output per input step, here next-value forecasting of noisy sine
waves, trained with truncated BPTT (chunks of 50 steps, state carried between chunks).

    python examples/seq2seq_sine.py
"""
import numpy as np

import pyrnn
from pyrnn.demo.tasks import sine_waves

rng = np.random.default_rng(0)
X, Y = sine_waves(2000, 200, rng)          # x (N, T, 1) noisy; y the clean value one step ahead
Xt, Yt = sine_waves(200, 200, rng)

model = pyrnn.Seq2Seq(input_size=1, output_size=1, hidden_size=32, cell="lstm", seed=0)
opt = pyrnn.optim.Adam(model, lr=5e-3)
pyrnn.fit(model, (X, Y), "mse", opt, epochs=6, batch_size=32, validation_data=(Xt, Yt), tbptt=50)
pred = model.predict(Xt)
print(f"forecast MSE {np.mean((pred[:, 20:] - Yt[:, 20:]) ** 2):.5f}, "
      f"repeating the noisy input {np.mean((Xt[:, 20:] - Yt[:, 20:]) ** 2):.5f}")
