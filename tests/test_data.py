import json

import pytest

from cahp_core.data import load_task, load_task_from_file, subset, tokenize_records
from cahp_core.errors import DataError


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _folder(tmp_path, train, validation=None):
    _write_jsonl(tmp_path / "train.jsonl", train)
    _write_jsonl(tmp_path / "validation.jsonl", validation or train)
    return tmp_path


GOOD = [{"text": f"t{i}", "label": i % 5} for i in range(20)]


def test_bundled_sst5_loads_offline_with_subsets():
    task = load_task("sst5", max_train=100, max_eval=50, seed=1)
    assert task.source == "bundled:sst5"
    assert len(task.splits["train"]) == 100 and len(task.splits["validation"]) == 50
    assert len(task.splits["test"]) == 2210
    again = load_task("sst5", max_train=100, max_eval=50, seed=1)
    assert task.splits["train"] == again.splits["train"]
    assert load_task("sst5", max_train=100, seed=2).splits["train"] != task.splits["train"]


def test_shared_mnli_folder(shared_data):
    task = load_task("mnli", data_dir=shared_data / "mnli", max_train=200, max_eval=100)
    assert set(task.splits) == {"train", "validation_matched", "validation_mismatched_hard"}
    assert task.spec.num_labels == 3 and task.spec.eval_split == "validation_matched"
    record = task.splits["train"][0]
    assert set(record) == {"premise", "hypothesis", "label"}
    assert len(task.splits["validation_mismatched_hard"]) == 4530


def test_shared_sst5_folder_matches_counts(shared_data):
    task = load_task("sst5", data_dir=shared_data / "sst5")
    assert [len(task.splits[s]) for s in ("train", "validation", "test")] == [8544, 1101, 2210]


def test_custom_csv_and_inferred_labels(tmp_path):
    (tmp_path / "train.csv").write_text("sentence,y\nhello,0\nworld,1\nagain,2\n")
    (tmp_path / "validation.csv").write_text("sentence,y\nhi,1\n")
    task = load_task("custom", data_dir=tmp_path, text_columns=("sentence",), label_column="y")
    assert task.spec.num_labels == 3 and task.splits["validation"] == [
        {"sentence": "hi", "label": 1}
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"txt": "a", "label": 0}], "no column"),
        ([{"text": "a", "label": 7}, {"text": "b", "label": 0}], "outside 0..4"),
        ([{"text": "a", "label": "pos"}, {"text": "b", "label": 0}], "not an integer"),
        ([{"text": "a", "label": 1.5}, {"text": "b", "label": 0}], "not an integer"),
        ([{"text": "a", "label": 1}, {"text": "b", "label": 1}], "single class"),
    ],
)
def test_bad_records_name_the_file(tmp_path, rows, message):
    folder = _folder(tmp_path, rows, GOOD)
    with pytest.raises(DataError, match=message) as info:
        load_task("sst5", data_dir=folder)
    if message != "single class":
        assert "train.jsonl" in str(info.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_task("sst5", data_dir=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .jsonl or .csv"):
        load_task("sst5", data_dir=tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_bytes(b'{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_task("sst5", data_dir=bad)
    (bad / "train.jsonl").write_text('{"text": "a", "label": 0}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_task("sst5", data_dir=bad)
    _write_jsonl(bad / "train.jsonl", GOOD)
    with pytest.raises(DataError, match="split 'validation' not found"):
        load_task("sst5", data_dir=bad)
    _write_jsonl(bad / "validation.jsonl", [])
    (bad / "validation.jsonl").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_task("sst5", data_dir=bad)
    with pytest.raises(DataError, match="unknown task"):
        load_task("imdb")


def test_single_uploaded_file_is_split(tmp_path):
    _write_jsonl(tmp_path / "up.jsonl", [{"a": f"x{i}", "b": "y", "lab": i % 2} for i in range(30)])
    task = load_task_from_file(tmp_path / "up.jsonl", ["a", "b"], "lab")
    assert len(task.splits["train"]) == 27 and len(task.splits["validation"]) == 3
    assert task.spec.num_labels == 2


def test_subset_deterministic_and_ordered():
    items = list(range(100))
    a = subset(items, 10, 0)
    assert a == subset(items, 10, 0) and a == sorted(a) and len(a) == 10
    assert subset(items, None, 0) == items


def test_tokenize_pairs_and_truncation(tiny):
    task = load_task("sst5", max_train=4, max_eval=2)
    long = [{"text": "word " * 500, "label": 1}]
    features = tokenize_records(long, tiny.tokenizer, task.spec, max_length=32)
    assert len(features[0]["input_ids"]) == 32 and features[0]["labels"] == 1
    pair_spec = load_task("custom", data_dir=_folder_pairs(), text_columns=("p", "h")).spec
    features = tokenize_records(
        [{"p": "a cat", "h": "an animal", "label": 0}], tiny.tokenizer, pair_spec
    )
    assert 1 in features[0]["token_type_ids"]


def _folder_pairs():
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    rows = [{"p": "a", "h": "b", "label": i % 2} for i in range(4)]
    _write_jsonl(folder / "train.jsonl", rows)
    _write_jsonl(folder / "validation.jsonl", rows)
    return folder
