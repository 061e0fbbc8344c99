"""pyrnn.dask.predict on a dask.distributed LocalCluster of 2 worker processes: results equal to
in-process predict, the model sent once per worker, bad collections refused before any work."""
import pickle

import numpy as np
import pytest

pytest.importorskip("dask.distributed")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

import pyrnn  # noqa: E402
import pyrnn.dask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((103, 9, 3)).astype(np.float32)
    lengths = rng.integers(1, 10, size=103)
    return x, lengths


MODELS = [
    lambda: pyrnn.Seq2Vec(input_size=3, output_size=2, hidden_size=8, seed=0),
    lambda: pyrnn.Seq2Seq(input_size=3, output_size=2, hidden_size=8, cell="gru", seed=1),
    lambda: pyrnn.Seq2Vec(input_size=3, output_size=4, hidden_size=6, bidirectional=True, pooling="mean", seed=2),
]


@pytest.mark.parametrize("make", MODELS)
def test_array_equals_in_process_predict(client, data, make):
    x, lengths = data
    model = make()
    want = model.predict(x, lengths=lengths)
    got = pyrnn.dask.predict(model, da.from_array(x, chunks=(25, 9, 3)), lengths, client=client)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got.compute(), want)
    # lengths as a dask array with other chunks, and no lengths at all
    got = pyrnn.dask.predict(model, da.from_array(x, chunks=(40, 5, 3)), da.from_array(lengths, chunks=30))
    np.testing.assert_array_equal(got.compute(), want)
    np.testing.assert_array_equal(pyrnn.dask.predict(model, da.from_array(x, chunks=50)).compute(), model.predict(x))


@pytest.mark.parametrize("make", MODELS[:2])
def test_bag_of_variable_length_sequences(client, data, make):
    x, lengths = data
    model = make()
    want = model.predict(x, lengths=lengths)
    seqs = [x[i, :n] for i, n in enumerate(lengths)]
    got = pyrnn.dask.predict(model, db.from_sequence(seqs, npartitions=5), batch_size=7).compute()
    assert len(got) == len(seqs)
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(got[i], want[i, :n] if want.ndim == 3 else want[i])


def test_token_model(client):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 20, size=(40, 6))
    model = pyrnn.Seq2Vec(vocab_size=20, embedding_dim=5, output_size=3, hidden_size=7, seed=0)
    got = pyrnn.dask.predict(model, da.from_array(ids, chunks=15), np.full(40, 6))
    np.testing.assert_array_equal(got.compute(), model.predict(ids))


def test_model_is_sent_once_not_per_task(client, data):
    x, lengths = data
    model = pyrnn.Seq2Vec(input_size=3, output_size=2, hidden_size=256, seed=0)   # ~1 MB of weights
    size = len(pickle.dumps(model))
    held_before = set(client.who_has())
    y = pyrnn.dask.predict(model, da.from_array(x, chunks=5), lengths)        # 21 blocks
    graph = dict(y.__dask_graph__())
    blocks = [k for k in graph if isinstance(k, tuple) and k[0] == y.name]
    assert len(blocks) == 21
    # the tasks refer to the scattered model by key: the graph is much smaller than one model
    graph_bytes = sum(len(pickle.dumps(v)) for k, v in graph.items() if isinstance(k, tuple) and k[0] == y.name)
    assert graph_bytes < size / 4
    who_has = client.who_has()
    model_keys = [k for k in set(who_has) - held_before if "Seq2Vec" in str(k)]
    assert len(model_keys) == 1 and len(who_has[model_keys[0]]) == 2        # one copy on each worker


def test_bad_collections_raise_before_any_work(client, data):
    x, lengths = data
    model = pyrnn.Seq2Vec(input_size=3, output_size=2, hidden_size=8, seed=0)
    def keys():
        return set(client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks]))

    before = keys()
    with pytest.raises(ValueError, match=r"\(N, T, 3\) floats"):
        pyrnn.dask.predict(model, da.from_array(x[..., :2], chunks=20), lengths)
    with pytest.raises(ValueError, match="floats"):
        pyrnn.dask.predict(model, da.from_array(x.astype(np.int32), chunks=20), lengths)
    with pytest.raises(ValueError, match="add a feature axis"):
        pyrnn.dask.predict(pyrnn.Seq2Vec(input_size=1, output_size=1, seed=0), da.from_array(x[..., 0], chunks=20))
    with pytest.raises(ValueError, match=r"lengths: expected \(103,\)"):
        pyrnn.dask.predict(model, da.from_array(x, chunks=20), lengths[:5])
    with pytest.raises(ValueError, match="lengths: each must be in 1..9"):
        pyrnn.dask.predict(model, da.from_array(x, chunks=20), lengths + 5)
    with pytest.raises(TypeError, match="dask.array or a dask.bag"):
        pyrnn.dask.predict(model, x, lengths)
    assert keys() - before == set()      # nothing was scattered or submitted


def test_bad_bag_element_names_it(client, data):
    x, _ = data
    model = pyrnn.Seq2Vec(input_size=3, output_size=2, hidden_size=8, seed=0)
    seqs = [x[0], x[1][:, :2]]
    with pytest.raises(ValueError, match=r"sequence 1 of this partition: expected a \(T, 3\) float array"):
        pyrnn.dask.predict(model, db.from_sequence(seqs, npartitions=1)).compute()
