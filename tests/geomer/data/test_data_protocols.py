from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from data_layouts import write_casme2, write_samm, write_smic

from geomer.data import read_dataset
from geomer.data.protocols import (
    LOSO, HoldoutDataset, LeakError, check_disjoint, check_folds, fold_name, get_protocol,
)
from geomer.data.sample import Sample
from geomer.errors import GeomerError


def _sample(subject_key: str, clip: str, label_index: int = 0) -> Sample:
    return Sample(
        dataset=subject_key.split("/")[0], subject_key=subject_key, clip=clip, label="a",
        label_index=label_index, onset=1, apex=2, offset=3, aus=(), source=Path("."),
    )


@pytest.fixture(scope="module")
def composite(tmp_path_factory):
    root = tmp_path_factory.mktemp("megc")
    write_casme2(root / "CASME2")
    write_samm(root / "SAMM")
    write_smic(root / "SMIC")
    return read_dataset("megc2019", root, scheme="composite-3")


def test_loso_invariants_on_a_composite(composite):
    protocol = LOSO(composite.samples, composite.classes)
    folds = list(protocol.folds())
    assert len(folds) == len(protocol) == len(composite.subjects) == 10
    tested = Counter(i for fold in folds for i in fold.test)
    assert sorted(tested) == list(range(len(composite.samples)))
    assert set(tested.values()) == {1}  # every sample tested exactly once
    for fold in folds:
        train_subjects = {composite.samples[i].subject_key for i in fold.train}
        test_subjects = {composite.samples[i].subject_key for i in fold.test}
        assert test_subjects == set(fold.test_subjects) and len(test_subjects) == 1
        assert not train_subjects & test_subjects
        assert sorted(fold.train + fold.test) == list(range(len(composite.samples)))
    assert folds[0].name == "casme2_sub01"
    assert protocol.class_names == ("negative", "positive", "surprise")
    parts = protocol.parts()
    assert list(parts) == ["casme2", "samm", "smic"]
    assert sum(len(v) for v in parts.values()) == len(composite.samples)
    assert all(composite.samples[i].dataset == name for name, idx in parts.items() for i in idx)


def test_protocol_from_index_and_by_name(composite):
    protocol = get_protocol("loso", composite)
    assert protocol.class_names == composite.classes and len(protocol) == 10
    with pytest.raises(GeomerError, match="unknown protocol 'kfold'"):
        get_protocol("kfold", composite)


def test_same_bare_subject_in_two_datasets_is_two_folds():
    samples = [_sample("casme2/sub01", "a"), _sample("casme3/sub01", "a"), _sample("casme2/sub01", "b")]
    folds = list(LOSO(samples, ["a"]).folds())
    assert [f.test for f in folds] == [(0, 2), (1,)]
    assert fold_name("casme3/spNO.1") == "casme3_spNO.1"


def test_check_disjoint_raises_on_overlap():
    train = [_sample("casme2/sub01", "a"), _sample("casme2/sub02", "b")]
    check_disjoint(train, [_sample("casme2/sub03", "c")])
    with pytest.raises(LeakError, match="fold f1: subject\\(s\\) casme2/sub02 on both"):
        check_disjoint(train, [_sample("casme2/sub02", "c")], "f1")
    assert issubclass(LeakError, GeomerError)


def test_check_folds_refuses_what_pooling_cannot_use():
    """Pooled metrics need every sample tested exactly once, and each fold its own folder."""
    from geomer.data.protocols import Fold

    keys = ["s/1", "s/2", "s/3"]
    check_folds([Fold("a", (1, 2), (0,), ("s/1",)), Fold("b", (0,), (1, 2), ("s/2", "s/3"))], keys)
    with pytest.raises(GeomerError, match="sample 0 is tested in folds a and b"):
        check_folds([Fold("a", (1, 2), (0,), ("s/1",)), Fold("b", (1,), (0, 2), ("s/1", "s/3"))], keys)
    with pytest.raises(GeomerError, match="1 samples are never tested"):
        check_folds([Fold("a", (1, 2), (0,), ("s/1",)), Fold("b", (0,), (1,), ("s/2",))], keys)
    with pytest.raises(GeomerError, match="fold names collide"):
        check_folds([Fold("a/b", (1, 2), (0,), ("s/1",)), Fold("a_b", (0,), (1, 2), ("s/2", "s/3"))], keys)
    with pytest.raises(GeomerError, match="fold a: no training samples"):
        check_folds([Fold("a", (), (0, 1, 2), ("s/1", "s/2", "s/3"))], keys)


def test_a_leaking_split_is_refused():
    class Leaky(LOSO):
        def _splits(self):
            for name, train, test, subjects in super()._splits():
                yield name, train + test[:1], test, subjects

    with pytest.raises(LeakError):
        list(Leaky([_sample("s/1", "a"), _sample("s/2", "b")], ["a"]).folds())


def test_label_outside_classes_is_refused():
    with pytest.raises(GeomerError, match="label index 3 outside"):
        LOSO([replace(_sample("s/1", "a"), label_index=3)], ["a", "b"])


def test_holdout_dataset_tests_each_source_dataset_once(composite):
    protocol = get_protocol("holdout-dataset", composite)
    assert isinstance(protocol, HoldoutDataset)
    folds = list(protocol.folds())
    assert [f.name for f in folds] == ["casme2", "samm", "smic"] and len(protocol) == 3
    check_folds(folds, [s.subject_key for s in composite.samples])
    for fold in folds:
        assert {composite.samples[i].dataset for i in fold.test} == {fold.name}
        assert fold.name not in {composite.samples[i].dataset for i in fold.train}
        assert sorted(fold.train + fold.test) == list(range(len(composite.samples)))
        assert set(fold.test_subjects) == {composite.samples[i].subject_key for i in fold.test}


def test_holdout_dataset_refuses_a_single_dataset():
    samples = [_sample("casme2/sub01", "a"), _sample("casme2/sub02", "b")]
    with pytest.raises(GeomerError, match="not a composite"):
        HoldoutDataset(samples, ["a"])


def test_holdout_dataset_fold_names_are_path_safe():
    samples = [_sample("odd set/1", "a"), _sample("other/2", "b")]
    assert [f.name for f in HoldoutDataset(samples, ["a"]).folds()] == ["odd_set", "other"]
