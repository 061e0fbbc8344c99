"""pyrnn.sklearn: scikit-learn's own estimator checks, learning on variable-length sequences,
Pipeline / GridSearchCV / cross_validate(n_jobs=2), cloning, pickling, input forms and labels."""
import copy
import importlib.util
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import DataConversionWarning, NotFittedError  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import pyrnn  # noqa: E402
from pyrnn.sklearn import SequenceClassifier, SequenceEncoder, SequenceRegressor  # noqa: E402

SMALL = dict(hidden_size=8, epochs=20, random_state=0)

# Every check of scikit-learn's suite runs (they feed 2-D (n_samples, n_features) arrays, read
# as one step per sample) and none is expected to fail. The one it skips by itself,
# check_array_api_input, runs only with SCIPY_ARRAY_API=1 set and is for estimators that compute
# on array-API namespaces (CuPy, torch): pyrnn computes on NumPy arrays only.
# The data_not_an_array checks feed pandas objects and are skipped by scikit-learn where pandas
# is not installed.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}
SKIPPED_BY_SKLEARN = {"check_array_api_input"}
if importlib.util.find_spec("pandas") is None:
    SKIPPED_BY_SKLEARN |= {"check_classifier_data_not_an_array", "check_regressor_data_not_an_array"}


@pytest.mark.parametrize("estimator", [
    SequenceClassifier(**SMALL), SequenceRegressor(**SMALL), SequenceEncoder(**SMALL),
    SequenceClassifier(cell="gru", bidirectional=True, pooling="mean", early_stopping=True, n_iter_no_change=2,
                       **SMALL),
    SequenceRegressor(cell="slstm", optimizer="adamw", **dict(SMALL, epochs=10))],
    ids=["classifier", "regressor", "encoder", "bidirectional-gru-classifier-early-stopping", "slstm-regressor"])
def test_sklearn_estimator_checks(estimator):
    results = check_estimator(estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None, on_skip=None)
    failed = {r["check_name"]: f"{type(r['exception']).__name__}: {r['exception']}" for r in results
              if r["status"] == "failed"}
    assert not failed, failed
    assert {r["check_name"] for r in results if r["status"] == "skipped"} <= SKIPPED_BY_SKLEARN
    assert sum(r["status"] == "passed" for r in results) >= 45


# ---------------------------------------------------------------------------------------------
# tasks that need the sequences read to their (varying) ends


def marker_task(n, seed):
    """Sequences of 5-30 steps, 2 noisy features; the class is set by a marker at step 0, so
    a 'last'-pooled encoder must carry it to each sequence's own end."""
    rng = np.random.default_rng(seed)
    names = np.array(["low", "mid", "high"])
    k = rng.integers(0, 3, n)
    X = []
    for i in range(n):
        x = rng.normal(0, 0.5, (int(rng.integers(5, 31)), 2)).astype(np.float32)
        x[0, 0] = (k[i] - 1) * 2.0
        X.append(x)
    return X, names[k]


def mean_task(n, seed):
    """Targets far from unit scale: 10 * mean(feature 0) + 3 and the max of feature 1."""
    rng = np.random.default_rng(seed)
    X = [rng.normal(0, 1, (int(rng.integers(5, 31)), 2)) for _ in range(n)]
    y = np.array([[10 * x[:, 0].mean() + 3, x[:, 1].max()] for x in X])
    return X, y


@pytest.fixture(scope="module")
def markers():
    return marker_task(400, 0), marker_task(200, 1)


def test_classifier_learns_variable_length_marker_task(markers):
    (X, y), (Xt, yt) = markers
    clf = SequenceClassifier(hidden_size=16, epochs=15, random_state=0).fit(X, y)
    assert list(clf.classes_) == ["high", "low", "mid"]
    assert clf.score(Xt, yt) >= 0.95          # chance is 1/3
    proba = clf.predict_proba(Xt)
    assert proba.shape == (200, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(Xt), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(Xt), np.log(proba))
    assert clf.n_features_in_ == 2 and clf.n_iter_ == 15 and len(clf.history_["loss"]) == 15


def test_regressor_beats_the_mean_on_unscaled_targets():
    (X, y), (Xt, yt) = mean_task(400, 0), mean_task(200, 1)
    reg = SequenceRegressor(hidden_size=16, epochs=15, random_state=0).fit(X, y[:, 0])
    pred = reg.predict(Xt)
    assert pred.shape == (200,)
    assert reg.score(Xt, yt[:, 0]) >= 0.9     # R^2; predicting the mean scores 0
    multi = SequenceRegressor(hidden_size=16, epochs=15, random_state=0).fit(X, y)
    assert multi.n_outputs_ == 2 and multi.predict(Xt).shape == (200, 2)
    assert multi.score(Xt, yt) >= 0.8
    column = SequenceRegressor(hidden_size=4, epochs=1, random_state=0).fit(X, y[:, :1])
    assert column.predict(Xt).shape == (200, 1)


def test_pipeline_encoder_then_logistic_regression(markers):
    (X, y), (Xt, yt) = markers
    pipe = make_pipeline(SequenceEncoder(hidden_size=16, epochs=10, bidirectional=True, random_state=0),
                         LogisticRegression())
    pipe.fit(X, y)
    assert pipe.score(Xt, yt) >= 0.95
    enc = pipe[0]
    features = enc.transform(Xt)
    assert features.shape == (200, 32) and features.dtype == np.float64
    assert enc.objective_ == "classification"
    assert list(enc.get_feature_names_out()) == [f"sequenceencoder{i}" for i in range(32)]
    np.testing.assert_array_equal(features, enc.model_.encode(Xt))   # the model's own pooled features


def test_encoder_objectives():
    X, y = mean_task(60, 0)
    assert SequenceEncoder(epochs=1, random_state=0).fit(X, y[:, 0]).objective_ == "regression"
    codes = (y[:, 0] > 3).astype(int)
    assert SequenceEncoder(epochs=1, random_state=0).fit(X, codes).objective_ == "classification"
    assert SequenceEncoder(objective="regression", epochs=1, random_state=0).fit(X, codes).objective_ == "regression"
    with pytest.raises(ValueError, match="objective must be"):
        SequenceEncoder(objective="autoencoder").fit(X, codes)
    with pytest.raises(ValueError, match="requires y"):
        SequenceEncoder().fit(X)


def test_grid_search_over_hidden_size(markers):
    (X, y), (Xt, yt) = markers
    search = GridSearchCV(SequenceClassifier(epochs=15, random_state=0), {"hidden_size": [1, 16]}, cv=2)
    search.fit(X, y)
    assert search.best_params_ == {"hidden_size": 16}
    assert search.cv_results_["mean_test_score"][1] > 0.6 > search.cv_results_["mean_test_score"][0]
    assert search.best_estimator_.model_.rnn.hidden_size == 16
    assert search.score(Xt, yt) >= 0.95        # refit on all 400


def test_cross_validate_in_two_processes_matches_one(markers):
    """joblib's worker processes receive pickled estimators and ragged lists, and their results
    are those of the parent bit for bit (one kernel thread on both sides: the workers get
    OMP_NUM_THREADS = cores // n_jobs from joblib, which pyrnn reads)."""
    (X, y), _ = markers
    est = SequenceClassifier(hidden_size=8, epochs=3, random_state=0, n_threads=1)
    cv = KFold(3, shuffle=True, random_state=0)
    two = cross_validate(est, X[:150], y[:150], cv=cv, n_jobs=2, return_estimator=True)
    one = cross_validate(est, X[:150], y[:150], cv=cv, n_jobs=1)
    np.testing.assert_array_equal(two["test_score"], one["test_score"])
    assert all(e.n_iter_ == 3 for e in two["estimator"])
    import joblib
    if not (os.environ.get("PYRNN_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")):   # else those rule
        threads = joblib.Parallel(n_jobs=2)(joblib.delayed(pyrnn.get_num_threads)() for _ in range(2))
        assert threads == [max(1, joblib.cpu_count() // 2)] * 2


def test_seeded_fits_repeat_bit_for_bit_and_seeds_differ(markers):
    (X, y), (Xt, _) = markers
    a = SequenceClassifier(**SMALL).fit(X[:100], y[:100]).predict_proba(Xt)
    b = SequenceClassifier(**SMALL).fit(X[:100], y[:100]).predict_proba(Xt)
    c = SequenceClassifier(**dict(SMALL, random_state=1)).fit(X[:100], y[:100]).predict_proba(Xt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rs = np.random.RandomState(0)
    assert not np.array_equal(SequenceRegressor(random_state=rs, epochs=1).fit(X[:50], np.arange(50.0)).predict(Xt),
                              SequenceRegressor(random_state=rs, epochs=1).fit(X[:50], np.arange(50.0)).predict(Xt))


def test_clone_pickle_and_params(markers):
    (X, y), (Xt, _) = markers
    clf = SequenceClassifier(cell="gru", hidden_size=8, epochs=2, random_state=0).fit(X[:80], y[:80])
    params = clf.get_params()
    assert params["cell"] == "gru" and params["hidden_size"] == 8 and "model_" not in params
    fresh = clone(clf)
    assert fresh.get_params() == params and not hasattr(fresh, "model_")
    with pytest.raises(NotFittedError):
        fresh.predict(Xt)
    assert fresh.set_params(hidden_size=4, pooling="max") is fresh and fresh.hidden_size == 4
    copies = [pickle.loads(pickle.dumps(clf, protocol=p)) for p in (2, pickle.HIGHEST_PROTOCOL)]
    for back in copies + [copy.deepcopy(clf)]:
        np.testing.assert_array_equal(back.predict_proba(Xt), clf.predict_proba(Xt))
        np.testing.assert_array_equal(back.classes_, clf.classes_)


def test_input_forms_read_alike():
    rng = np.random.default_rng(0)
    X3 = rng.normal(size=(40, 6, 3)).astype(np.float32)
    y = np.arange(40) % 2
    clf = SequenceClassifier(hidden_size=4, epochs=2, random_state=0).fit(X3, y)
    as_array = clf.predict_proba(X3)
    np.testing.assert_array_equal(clf.predict_proba(list(X3)), as_array)           # regular list: as an array
    np.testing.assert_array_equal(clf.predict_proba(X3.astype(np.float64)), as_array)
    # A ragged list: each sequence read to its own end, in any order and any mix of lengths.
    ragged = [X3[i, : 2 + i % 5] for i in range(40)]
    alone = np.concatenate([clf.predict_proba(X3[i:i + 1, : 2 + i % 5]) for i in range(40)])
    np.testing.assert_allclose(clf.predict_proba(ragged), alone, rtol=1e-6, atol=1e-7)
    # More rows than one prediction chunk (256): each row lands where it came from.
    np.testing.assert_allclose(clf.predict_proba(ragged * 15), np.tile(alone, (15, 1)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(clf.predict_proba(np.tile(X3, (15, 1, 1))), np.tile(as_array, (15, 1)),
                               rtol=1e-6, atol=1e-7)
    # 2-D: one step per sample, n_features_in_ features.
    flat = SequenceRegressor(hidden_size=4, epochs=1, random_state=0).fit(X3[:, 0], y.astype(float))
    assert flat.n_features_in_ == 3
    np.testing.assert_array_equal(flat.predict(X3[:, :1]), flat.predict(X3[:, 0]))


def test_bad_input_is_named():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(t, 2)) for t in (3, 4, 5)]
    y = [0, 1, 0]
    clf = SequenceClassifier(hidden_size=4, epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"a batch of univariate series is \(n_samples, T, 1\)"):
        clf.predict(rng.normal(size=(3, 7)))             # (N, T) univariate read as 7 features
    with pytest.raises(ValueError, match=r"sequence 1 has shape \(4,\); expected \(T_i, n_features\)"):
        clf.fit([np.zeros((3, 1)), np.zeros(4)], [0, 1])  # a univariate sequence is (T_i, 1)
    with pytest.raises(ValueError, match=r"different numbers of features \[2, 3\]"):
        clf.fit([np.zeros((3, 2)), np.zeros((4, 3))], [0, 1])
    with pytest.raises(ValueError, match="X has 3 features, but SequenceClassifier is expecting 2"):
        clf.predict([np.zeros((3, 3)), np.zeros((4, 3))])
    with pytest.raises(ValueError, match="sequence 2 contains NaN"):
        clf.fit(X[:2] + [np.full((2, 2), np.nan)], [0, 1, 1])
    with pytest.raises(ValueError, match=r"sequence 1 has shape \(0, 2\)"):
        clf.fit([np.zeros((3, 2)), np.zeros((0, 2))], [0, 1])
    with pytest.raises(ValueError, match="sequence 0 is complex"):
        clf.fit([np.zeros((3, 2), complex), np.zeros((4, 2))], [0, 1])
    with pytest.raises(ValueError, match="sequence 1 cannot be read as numbers"):
        clf.fit([np.zeros((3, 2)), [["a", "b"]]], [0, 1])
    with pytest.raises(ValueError, match="too large for float32"):
        clf.fit(np.full((2, 3, 2), 1e39), [0, 1])
    with pytest.raises(ValueError, match="4 dimensions"):
        clf.fit(np.zeros((2, 3, 4, 5)), [0, 1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.fit(X, [0, 1])
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(X, ["a", "a", "a"])
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X, [0.5, 1.5, 2.5])
    for params, message in [({"epochs": 0}, "epochs must be"), ({"optimizer": "lbfgs"}, "optimizer must be one of"),
                            ({"lr": -1}, "lr must be"), ({"validation_fraction": 1.0}, "validation_fraction"),
                            ({"n_threads": 0}, "n_threads"), ({"cell": "transformer"}, "cell")]:
        with pytest.raises(ValueError, match=message):
            clone(clf).set_params(**params).fit(X, y)


def test_labels_of_any_kind():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(int(t), 2)) for t in rng.integers(2, 6, 30)]
    for labels in (np.arange(30) % 3 * 10 - 5, np.array(["cat", "dog"] * 15), np.arange(30) % 2 == 0):
        clf = SequenceClassifier(hidden_size=4, epochs=1, random_state=0).fit(X, labels)
        np.testing.assert_array_equal(clf.classes_, np.unique(labels))
        assert set(clf.predict(X)) <= set(labels) and clf.predict(X).dtype == clf.classes_.dtype
    with pytest.warns(DataConversionWarning):
        clf.fit(X, (np.arange(30) % 2)[:, None])


def test_early_stopping_keeps_the_best_epoch():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(int(t), 2)) for t in rng.integers(2, 8, 120)]
    noise = rng.integers(0, 2, 120)                     # labels unrelated to X: validation loss rises
    clf = SequenceClassifier(hidden_size=16, epochs=60, lr=0.05, early_stopping=True, n_iter_no_change=3,
                             random_state=0).fit(X, noise)
    val = clf.history_["val_loss"]
    assert clf.history_.stopped_early and clf.n_iter_ < 60
    assert np.argmin(val) == clf.n_iter_ - 1 - 3             # stopped 3 epochs after the best


def test_n_threads_is_restored():
    before = pyrnn.get_num_threads()
    SequenceRegressor(hidden_size=4, epochs=1, n_threads=1).fit(np.zeros((4, 2)), np.arange(4.0))
    assert pyrnn.get_num_threads() == before


def test_without_sklearn_the_import_says_what_to_install(tmp_path):
    code = ("import sys\nimport pyrnn\nassert 'sklearn' not in sys.modules, 'import pyrnn loaded sklearn'\n"
            "sys.modules['sklearn'] = None\n"
            "try:\n    import pyrnn.sklearn\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pyrnn.__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert 'pip install "pyrnn[sklearn]"' in out.stdout, out.stderr


def test_no_warning_when_predicting_full_length_arrays_after_ragged_training():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(int(t), 2)) for t in rng.integers(2, 8, 20)]
    reg = SequenceRegressor(hidden_size=4, epochs=1, random_state=0).fit(X, np.arange(20.0))
    padded = np.zeros((2, 5, 2))                        # ends in zeros, and is data: no padding warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.predict(padded).shape == (2,)
