"""Seq2Vec: an LSTM reads a whole sequence and regresses one number (the adding problem).

    python examples/seq2vec_adding.py [T]

Two values among T uniform ones are marked; the target is their sum. Predicting the mean gives
MSE ~0.167; the LSTM gets below 0.01 once it learns to gate the marked values in.
"""
import sys
import time

import numpy as np

import pyrnn
from pyrnn.demo.tasks import adding_problem

T = int(sys.argv[1]) if len(sys.argv) > 1 else 100
rng = np.random.default_rng(0)
X, y = adding_problem(20000, T, rng)
Xt, yt = adding_problem(2000, T, rng)

model = pyrnn.Seq2Vec(input_size=2, output_size=1, hidden_size=64, cell="lstm", seed=0)
opt = pyrnn.optim.Adam(model, lr=5e-3)
stop = pyrnn.EarlyStopping(monitor="val_loss", patience=4)
t0 = time.perf_counter()
pyrnn.fit(model, (X, y), "mse", opt, epochs=20, batch_size=64, validation_data=(Xt, yt),
          clip_grad_norm=1.0, callbacks=[stop])
mse = np.mean((model.predict(Xt)[:, 0] - yt) ** 2)
print(f"test MSE {mse:.4f} after {time.perf_counter() - t0:.0f}s")
