"""Bodies to and from upstreams: OIP and MLflow encodings, and what they keep."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from proxy.codecs_upstream import (
    UpstreamProtocolError, decode_mlflow_response, decode_oip_metadata, decode_oip_response,
    encode_mlflow_request, encode_oip_request, error_message, infer_specs,
)
from proxy.tensors import TensorSpec


def test_oip_request_is_flat_row_major_with_datatypes_and_id():
    x = np.array([[0.1, 1 / 3], [2.5, -1.0]], np.float32)
    doc = orjson.loads(encode_oip_request({"x": x, "n": np.array([1, 2], np.int64),
                                           "s": np.array(["a", "é"], object)}, request_id="r-1"))
    assert doc["id"] == "r-1" and "outputs" not in doc
    by = {t["name"]: t for t in doc["inputs"]}
    assert by["x"]["datatype"] == "FP32" and by["x"]["shape"] == [2, 2]
    assert np.array(by["x"]["data"], np.float32).tolist() == x.ravel().tolist()  # FP32 exact both ways
    assert by["n"] == {"name": "n", "shape": [2], "datatype": "INT64", "data": [1, 2]}
    assert by["s"]["datatype"] == "BYTES" and by["s"]["data"] == ["a", "é"]


def test_oip_response_nested_or_flat_data():
    flat = orjson.dumps({"outputs": [{"name": "p", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]})
    nested = orjson.dumps({"outputs": [{"name": "p", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]})
    for body in (flat, nested):
        out = decode_oip_response(body)
        assert out["p"].dtype == np.float32 and out["p"].tolist() == [[1, 2], [3, 4]]


def test_oip_binary_output_is_refused():
    body = orjson.dumps({"outputs": [{"name": "p", "datatype": "FP32", "shape": [1], "data": [],
                                      "parameters": {"binary_data_size": 4}}]})
    with pytest.raises(UpstreamProtocolError, match="binary extension"):
        decode_oip_response(body)


def test_oip_metadata():
    ins, outs = decode_oip_metadata(orjson.dumps({
        "name": "m", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}]}))
    assert ins == (TensorSpec("x", "FP32", (-1, 3)),) and outs == (TensorSpec("y", "INT64", (-1,)),)
    for bad in (b"[]", b'"m"', b'{"inputs": [1]}', b'{"inputs": [{"name": "x"}]}'):
        with pytest.raises(UpstreamProtocolError, match="OIP model metadata"):
            decode_oip_metadata(bad)


def test_mlflow_request_forms():
    x = np.array([[1.5, 2.0]], np.float32)
    assert orjson.loads(encode_mlflow_request({"x": x})) == {"inputs": [[1.5, 2.0]]}
    assert orjson.loads(encode_mlflow_request({"x": x}, columns=["a", "b"])) == {
        "dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2.0]]}}
    # columns that do not match the input's width fall back to `inputs`
    assert "inputs" in orjson.loads(encode_mlflow_request({"x": x}, columns=["a"]))
    two = orjson.loads(encode_mlflow_request({"x": x, "s": np.array([["u"]], object)}))
    assert two == {"inputs": {"x": [[1.5, 2.0]], "s": [["u"]]}}


def test_mlflow_response_forms():
    specs = (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2)))
    multi = decode_mlflow_response(orjson.dumps({"predictions": {"label": [0, 1],
                                                                 "probabilities": [[0.9, 0.1], [0.2, 0.8]]}}), specs)
    assert multi["label"].dtype == np.int64 and multi["probabilities"].dtype == np.float32
    single = decode_mlflow_response(orjson.dumps({"predictions": [0.25, 0.75]}), (TensorSpec("score", "FP64", (-1,)),))
    assert list(single) == ["score"] and single["score"].tolist() == [0.25, 0.75]
    unnamed = decode_mlflow_response(orjson.dumps({"predictions": [[1, 2]]}))
    assert list(unnamed) == ["predictions"] and unnamed["predictions"].shape == (1, 2)
    records = decode_mlflow_response(orjson.dumps({"predictions": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}))
    assert records["a"].tolist() == [1, 2] and records["b"].dtype == object and records["b"].tolist() == ["x", "y"]
    bare = decode_mlflow_response(orjson.dumps([3, 4]))  # older servers answer a bare list
    assert bare["predictions"].tolist() == [3, 4]
    with pytest.raises(UpstreamProtocolError, match="no predictions"):
        decode_mlflow_response(b'{"predictions": 3}')
    with pytest.raises(UpstreamProtocolError, match="not a rectangular array"):
        decode_mlflow_response(b'{"predictions": {"p": [[1, 2], [3]]}}', (TensorSpec("p", "FP32", (-1, 2)),))


def test_infer_specs_frees_the_batch_dimension():
    specs = infer_specs({"p": np.zeros((3, 2)), "l": np.zeros(3, np.int64)})
    assert specs == (TensorSpec("p", "FP64", (-1, 2)), TensorSpec("l", "INT64", (-1,)))


@pytest.mark.parametrize("body,msg", [
    (b'{"error": "bad shape"}', "bad shape"),
    (b'{"error_code": "BAD_REQUEST", "message": "exactly one of", "stack_trace": "Traceback..."}', "exactly one of"),
    (b"Internal Server Error", "Internal Server Error"),
    (b"", "<empty body>"),
])
def test_error_message(body, msg):
    assert error_message(body) == msg
