"""Small, real ONNX models and realistic synthetic traffic for the demo, tests and benchmarks.

The models are logistic regressions built directly as ONNX graphs (no training library at
serving time) with the two outputs a skl2onnx classifier has with zipmap=False:
`label` (int64, [N]) and `probabilities` (float32, [N, 2]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CREDIT_FEATURES: tuple[str, ...] = (
    "age", "income_k", "debt_to_income", "credit_history_years", "open_accounts",
    "delinquencies_2y", "loan_amount_k", "employment_years", "utilization", "small_business",
)
# Standardised-feature weights of a plausible default-risk model (positive = riskier).
CREDIT_WEIGHTS = np.array([-0.25, -0.55, 0.9, -0.45, 0.15, 0.8, 0.35, -0.3, 0.7, 0.05], dtype=np.float32)
CREDIT_BIAS = -1.2
# Feature means and scales used to standardise inside the graph.
_MEAN = np.array([42, 65, 0.32, 12, 6, 0.4, 25, 7, 0.35, 0.12], dtype=np.float32)
_SCALE = np.array([12, 30, 0.15, 8, 3, 0.8, 15, 6, 0.2, 0.33], dtype=np.float32)


def logistic_onnx(weights: np.ndarray, bias: float, *, mean: np.ndarray | None = None,
                  scale: np.ndarray | None = None, input_name: str = "features",
                  threshold: float = 0.5) -> onnx.ModelProto:
    """A binary logistic regression on one float32 input of shape [-1, k].

    probabilities[:, 1] = sigmoid(((x - mean) / scale) @ w + b); label = p1 > threshold.
    """
    k = int(weights.shape[0])
    mean = np.zeros(k, np.float32) if mean is None else mean.astype(np.float32)
    scale = np.ones(k, np.float32) if scale is None else scale.astype(np.float32)
    inits = [
        numpy_helper.from_array(mean.reshape(1, k), "mean"),
        numpy_helper.from_array(scale.reshape(1, k), "scale"),
        numpy_helper.from_array(weights.astype(np.float32).reshape(k, 1), "w"),
        numpy_helper.from_array(np.array([bias], np.float32), "b"),
        numpy_helper.from_array(np.array([threshold], np.float32), "thr"),
        numpy_helper.from_array(np.array([1.0], np.float32), "one"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Sub", [input_name, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["z"]),
        helper.make_node("MatMul", ["z", "w"], ["logit0"]),
        helper.make_node("Add", ["logit0", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p1"]),
        helper.make_node("Sub", ["one", "p1"], ["p0"]),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        helper.make_node("Greater", ["p1", "thr"], ["gt"]),
        helper.make_node("Cast", ["gt"], ["label2d"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["label2d", "flat"], ["label"]),
    ]
    graph = helper.make_graph(
        nodes, "logistic_regression",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="shadowlane")
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    onnx.checker.check_model(model)
    return model


def credit_model(*, weight_shift: np.ndarray | None = None, bias_shift: float = 0.0) -> onnx.ModelProto:
    """The demo's credit-risk champion; `weight_shift`/`bias_shift` make a slightly different candidate."""
    w = CREDIT_WEIGHTS if weight_shift is None else CREDIT_WEIGHTS + weight_shift.astype(np.float32)
    return logistic_onnx(w, CREDIT_BIAS + bias_shift, mean=_MEAN, scale=_SCALE)


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def synth_applicants(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` rows of credit applications with realistic marginals (float32, [n, 10])."""
    age = np.clip(rng.normal(42, 12, n), 18, 90)
    income = np.clip(rng.lognormal(np.log(58), 0.5, n), 8, 600)
    dti = np.clip(rng.beta(3, 6, n), 0, 1)
    history = np.clip(age - 18 - rng.exponential(4, n), 0, None)
    accounts = rng.poisson(6, n)
    delinq = rng.poisson(0.4, n)
    loan = np.clip(rng.lognormal(np.log(20), 0.6, n), 1, 500)
    employment = np.clip(rng.exponential(7, n), 0, age - 16)
    utilization = np.clip(rng.beta(2, 3.5, n), 0, 1)
    small_business = (rng.random(n) < 0.12).astype(np.float64)
    cols = [age, income, dti, history, accounts, delinq, loan, employment, utilization, small_business]
    return np.stack(cols, axis=1).astype(np.float32)
