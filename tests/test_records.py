"""Bad input gives an error naming file, line and field."""

import pytest

from warmgen.records import DataError, dataset_records, json_array_records, read_jsonl, read_parallel, read_tsv, text_examples


def test_jsonl_reads_and_keeps_ids(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "input": "x", "target": "y"}\n\n{"input": "x2", "target": "y2"}')  # no final newline
    rows = read_jsonl(path, "input", "target")
    assert [(r.id, r.source, r.target) for r in rows] == [("a", "x", "y"), ("d.jsonl:3", "x2", "y2")]


@pytest.mark.parametrize("line, message", [
    ('{"input": "x", "target": ', r"d.jsonl:2: not valid JSON"),
    ('{"input": "x"}', r"d.jsonl:2: field 'target' is missing"),
    ('{"input": "x", "target": "  "}', r"d.jsonl:2: field 'target' is empty"),
    ('{"input": 3, "target": "y"}', r"d.jsonl:2: field 'input' must be a string"),
    ('["x", "y"]', r"d.jsonl:2: expected a JSON object"),
    ('{"input": "x", "target": "y", "target": "z"}', r"d.jsonl:2: field 'target' appears twice in one object"),
    ('{"input": "x", "target": "\\ud800"}', r"d.jsonl:2: holds '\\ud800', half of a UTF-16 surrogate pair"),
    ('{"input": ' + "[" * 200_000 + "]" * 200_000 + ', "target": "y"}', r"d.jsonl:2: nested too deeply to read"),
])
def test_jsonl_errors(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "ok", "target": "ok"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_jsonl(path, "input", "target")


def test_non_utf8(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes(b"a\tb\nc\xff\td\n")
    with pytest.raises(DataError, match=r"d.tsv:2: not valid UTF-8"):
        read_tsv(path)


def test_tsv_column_count(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("a\tb\nonly one column\n")
    with pytest.raises(DataError, match=r"d.tsv:2: expected 2 tab-separated columns"):
        read_tsv(path)


def test_parallel_files(tmp_path):
    (tmp_path / "t.src").write_text("a\nb\n")
    (tmp_path / "t.tgt").write_text("A\nB")
    assert [(r.source, r.target) for r in read_parallel(tmp_path / "t.src", tmp_path / "t.tgt")] == [("a", "A"), ("b", "B")]
    (tmp_path / "t.tgt").write_text("A\n")
    with pytest.raises(DataError, match="t.src has 2 lines but .*t.tgt has 1"):
        read_parallel(tmp_path / "t.src", tmp_path / "t.tgt")
    (tmp_path / "t.tgt").write_text("A\n\n")
    with pytest.raises(DataError, match=r"t.tgt:2: line is empty"):
        read_parallel(tmp_path / "t.src", tmp_path / "t.tgt")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_tsv(tmp_path / "nope.tsv")


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    bom = "\ufeff".encode()
    (tmp_path / "d.tsv").write_bytes(bom + b"cat\tK AE1 T\n")
    (tmp_path / "d.jsonl").write_bytes(bom + b'{"input": "cat", "target": "K AE1 T"}\n')
    (tmp_path / "p.src").write_bytes(bom + b"cat\n")
    (tmp_path / "p.tgt").write_bytes(bom + b"K AE1 T\n")
    for rows in (read_tsv(tmp_path / "d.tsv"), read_jsonl(tmp_path / "d.jsonl", "input", "target"),
                 read_parallel(tmp_path / "p.src", tmp_path / "p.tgt")):
        assert [(r.source, r.target) for r in rows] == [("cat", "K AE1 T")]


@pytest.mark.parametrize("header", ["input\ttarget", "Source\tTarget", "word\tphones"])
def test_a_tsv_header_row_is_not_an_example(tmp_path, header):
    path = tmp_path / "d.tsv"
    path.write_text(f"{header}\ncat\tK AE1 T\n")
    rows = read_tsv(path, header=("word", "phones"))
    assert [(r.source, r.target) for r in rows] == [("cat", "K AE1 T")]
    path.write_text("cat\tK AE1 T\ninput\ttarget\n")  # only the first line can be a header
    assert len(read_tsv(path)) == 2


def test_an_empty_dev_file_and_a_missing_file_name_the_setting_and_the_path_as_written(tmp_path):
    from warmgen.config_files import load_config, parse_overrides
    from warmgen.tasks import load_task

    (tmp_path / "train.tsv").write_text("cat\tK AE1 T\n")
    (tmp_path / "dev.tsv").write_text("\n")
    base = ["--data.task", "seq2seq", "--data.train_file", str(tmp_path / "train.tsv")]
    with pytest.raises(DataError, match=r"data.dev_file '.*dev.tsv' has no examples"):
        load_task(load_config(None, parse_overrides(base + ["--data.dev_file", str(tmp_path / "dev.tsv")])))
    config = load_config(None, parse_overrides(base + ["--data.test_file", "no/such/test.tsv", "--config_dir", str(tmp_path)]))
    with pytest.raises(DataError, match=r"^'no/such/test.tsv': file not found \(looked for .*no/such/test.tsv and "):
        load_task(config)


def test_a_folder_given_as_a_data_file_is_named_as_a_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}: a folder, not a file"):
        read_jsonl(tmp_path, "input", "target")


def test_a_json_array_file_and_in_memory_rows_get_the_same_checks(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"input": "x", "target": "y"},\n {"input": "x", "input": "y"}]')
    with pytest.raises(DataError, match=r"d.json: field 'input' appears twice in one object"):
        list(json_array_records(path))
    with pytest.raises(DataError, match=r"train_dataset\[1\]: holds '\\udc80', half of a UTF-16 surrogate pair"):
        list(dataset_records([{"input": "x"}, {"input": "a\udc80"}], "train_dataset"))


def test_a_pandas_dataframe_is_read_as_its_rows():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"input": ["a", "b"], "target": ["A", "B"]})
    rows = text_examples(dataset_records(frame, "train_dataset"), "input", "target")
    assert [(r.source, r.target) for r in rows] == [("a", "A"), ("b", "B")]
