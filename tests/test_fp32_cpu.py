"""The FP32 artifact's CPU rewrites (grouped 7x7 convs as depthwise + sum, narrow 5x5 groups merged, ODConv's
im2col as one grouped Conv): exact, and only where they apply."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from glfer_edge.export.fp32_cpu import (  # noqa: E402
    depthwise_grouped_convs, factored_gates, im2col_convs, regrouped_convs,
)


def _conv_graph(cin: int, cout: int, k: int, group: int, bias: bool, stride: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((cout, cin // group, k, k)).astype(np.float32), "w")]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b"))
    node = helper.make_node("Conv", ["x", "w", *(["b"] if bias else [])], ["y"], name="branch", group=group,
                            kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 9, 13])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, None, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run_feeds(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _run(model, x: np.ndarray) -> np.ndarray:
    return _run_feeds(model, {"x": x})[0]


@pytest.mark.parametrize(("cin", "cout", "group", "bias"),
                         [(16, 8, 8, False), (32, 16, 8, True), (8, 2, 2, False), (8, 8, 2, True)])
def test_rewrite_is_exact(cin, cout, group, bias):
    model = _conv_graph(cin, cout, 7, group, bias)
    rewritten = depthwise_grouped_convs(model)
    onnx.checker.check_model(rewritten, full_check=True)
    ops = [n.op_type for n in rewritten.graph.node]
    og = cout // group
    assert ops == (["Concat"] if og > 1 else []) + ["Conv", "Conv"]
    depthwise = rewritten.graph.node[-2]
    assert helper.get_attribute_value(next(a for a in depthwise.attribute if a.name == "group")) == og * cin
    assert rewritten.graph.node[-1].output[0] == "y"  # per-layer comparisons keep their names
    x = np.random.default_rng(1).standard_normal((1, cin, 9, 13)).astype(np.float32)
    want, got = _run(model, x), _run(rewritten, x)
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()
    assert not np.array_equal(got, np.zeros_like(got))


@pytest.mark.parametrize(("k", "group", "stride"), [(5, 4, 1), (3, 2, 1), (7, 1, 1), (7, 8, 2)])
def test_small_kernels_dense_and_strided_convs_stay(k, group, stride):
    model = _conv_graph(16, 16, k, group, False, stride)
    assert [n.op_type for n in depthwise_grouped_convs(model).graph.node] == ["Conv"]


def test_group_outputs_below_rewrites_only_narrow_groups():
    narrow, wide = _conv_graph(16, 16, 7, 8, False), _conv_graph(64, 64, 7, 4, False)  # 2 and 16 outputs per group
    assert [n.op_type for n in depthwise_grouped_convs(narrow, group_outputs_below=8).graph.node] == [
        "Concat", "Conv", "Conv"]
    assert [n.op_type for n in depthwise_grouped_convs(wide, group_outputs_below=8).graph.node] == ["Conv"]
    assert len(depthwise_grouped_convs(wide).graph.node) == 3  # without the bound every grouped 7x7 is rewritten


def test_a_depthwise_conv_stays():
    model = _conv_graph(8, 8, 7, 8, False)
    assert depthwise_grouped_convs(model).graph.node[0].name == "branch"


# (cin, cout, group) -> merged group count: MSFE's 5x5 branches of the paper preset's stages 1-3, then odd cases
@pytest.mark.parametrize(("cin", "cout", "group", "merged"), [
    (64, 16, 4, 1), (128, 32, 4, 2), (256, 64, 4, 4), (96, 48, 6, 3), (32, 8, 2, 1), (64, 32, 4, 2),
])
def test_regrouped_convs_merge_narrow_groups_exactly(cin, cout, group, merged):
    model = _conv_graph(cin, cout, 5, group, bias=True)
    rewritten = regrouped_convs(model)
    onnx.checker.check_model(rewritten, full_check=True)
    node = rewritten.graph.node[0]
    assert [n.op_type for n in rewritten.graph.node] == ["Conv"] and node.name == "branch"
    assert helper.get_attribute_value(next(a for a in node.attribute if a.name == "group")) == merged
    assert list(rewritten.graph.initializer[0].dims) == [cout, cin // merged, 5, 5]
    x = np.random.default_rng(1).standard_normal((1, cin, 9, 13)).astype(np.float32)
    want, got = _run(model, x), _run(rewritten, x)
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    # a wrong block layout (each old group's kernel placed in the first input slot of its new group) fails
    w = numpy_helper.to_array(model.graph.initializer[0])
    o, r = cout // group, group // merged
    wrong = np.zeros((cout, cin // merged, 5, 5), np.float32)
    for j in range(group):
        wrong[j * o:(j + 1) * o, :cin // group] = w[j * o:(j + 1) * o]
    if r > 1:
        rewritten.graph.initializer[0].CopyFrom(numpy_helper.from_array(wrong, "w"))
        assert np.abs(_run(rewritten, x) - want).max() > 0.1 * np.abs(want).max()


@pytest.mark.parametrize(("cin", "cout", "k", "group"),
                         [(32, 16, 3, 2), (64, 16, 7, 8), (64, 64, 5, 4), (16, 16, 5, 16)])
def test_regrouped_convs_leave_other_convs(cin, cout, k, group):
    """3x3s (cheap im2col), 7x7s (the depthwise rewrite's), full blocks and depthwise convs stay as they are."""
    model = _conv_graph(cin, cout, k, group, bias=False)
    assert regrouped_convs(model).SerializeToString() == model.SerializeToString()


def _odconv_graph(stride: int, kernel_num: int, tmp_path):
    """ODConv2d (shifted formulation) with a dynamic batch, traced and slimmed as ``export_fp32`` does."""
    torch = pytest.importorskip("torch")
    onnxslim = pytest.importorskip("onnxslim")
    from glfer_edge.model.odconv import ODConv2d

    torch.manual_seed(0)
    module = ODConv2d(8, 16, stride=stride, kernel_num=kernel_num).eval()
    path = tmp_path / "odconv.onnx"
    torch.onnx.export(module, (torch.randn(2, 8, 12, 10),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)
    return onnxslim.slim(onnx.load(str(path)))


@pytest.mark.parametrize("kernel_num", [1, 2])
def test_im2col_rewrite_is_exact_on_odconv(kernel_num, tmp_path):
    model = _odconv_graph(1, kernel_num, tmp_path)
    rewritten = im2col_convs(model)
    onnx.checker.check_model(rewritten, full_check=True)
    before = [n.op_type for n in model.graph.node]
    ops = [n.op_type for n in rewritten.graph.node]
    assert before.count("Slice") == 9 and "Slice" not in ops and "Pad" not in ops and ops.count("Tile") == 1
    assert rewritten.graph.output[0].name == "y"
    # a batch of two: each sample has its own attention, so a mix-up of the tiled scales would show
    x = np.random.default_rng(1).standard_normal((2, 8, 12, 10)).astype(np.float32)
    x[1] *= 3.0
    want, got = _run(model, x), _run(rewritten, x)
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    assert np.abs(want[0] - want[1]).max() > 0.1 * np.abs(want).max()


def test_im2col_rewrite_keeps_a_bias(tmp_path):
    """The 1x1 Conv's bias (ODConv has none; the pattern allows one) is added after the batched MatMul."""
    model = _odconv_graph(1, 1, tmp_path)
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[0].startswith("/Concat"))
    bias = np.linspace(-1, 1, 16, dtype=np.float32)
    model.graph.initializer.append(numpy_helper.from_array(bias, "bias"))
    conv.input.append("bias")
    rewritten = im2col_convs(model)
    assert "MatMul" in [n.op_type for n in rewritten.graph.node]
    x = np.random.default_rng(3).standard_normal((2, 8, 12, 10)).astype(np.float32)
    want, got = _run(model, x), _run(rewritten, x)
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()


def test_a_strided_odconv_stays(tmp_path):
    model = _odconv_graph(2, 1, tmp_path)
    assert [n.op_type for n in im2col_convs(model).graph.node] == [n.op_type for n in model.graph.node]


def test_an_im2col_with_per_channel_scales_stays(tmp_path):
    """Tiling assumes one scale per sample and view; a view scaled per channel keeps the Slices."""
    model = _odconv_graph(1, 1, tmp_path)
    mul = next(n for n in model.graph.node if n.op_type == "Mul" and n.input[0].startswith("/Slice"))
    model.graph.initializer.append(numpy_helper.from_array(np.full((1, 8, 1, 1), 0.5, np.float32), "per_channel"))
    mul.input[1] = "per_channel"
    assert [n.op_type for n in im2col_convs(model).graph.node].count("Slice") == 9


def _gates_graph(gate_shapes, extra_reader: bool = False):
    """y = x g0 + x g1 (+ x g2 ...) on a (1, 4, 6, 5) map, each gate a graph input of its own shape."""
    names = [f"g{i}" for i in range(len(gate_shapes))]
    nodes = [helper.make_node("Mul", ["x", g], [f"m{i}"], name=f"mul{i}") for i, g in enumerate(names)]
    total = "m0"
    for i in range(1, len(names)):
        nodes.append(helper.make_node("Add", [total, f"m{i}"], [f"s{i}"], name=f"add{i}"))
        total = f"s{i}"
    outputs = [helper.make_tensor_value_info(total, TensorProto.FLOAT, [1, 4, 6, 5])]
    if extra_reader:  # the first product is also a graph output: it must stay
        outputs.append(helper.make_tensor_value_info("m0", TensorProto.FLOAT, [1, 4, 6, 5]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 5])]
    inputs += [helper.make_tensor_value_info(g, TensorProto.FLOAT, s) for g, s in zip(names, gate_shapes)]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_factored_gates_multiply_the_map_once():
    """FR's three gates (time, channel, frequency): x g_t + x g_c + x g_f -> x ((g_t + g_c) + g_f)."""
    shapes = [[1, 1, 6, 1], [1, 4, 1, 1], [1, 1, 1, 5]]
    model = _gates_graph(shapes)
    rewritten = factored_gates(model)
    onnx.checker.check_model(rewritten, full_check=True)
    on_map = [n for n in rewritten.graph.node if "x" in n.input]
    assert [n.op_type for n in on_map] == ["Mul"] and on_map[0].output[0] == "s2"
    assert sorted(n.op_type for n in rewritten.graph.node) == ["Add", "Add", "Mul"]
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 4, 6, 5)).astype(np.float32)}
    feeds |= {f"g{i}": rng.uniform(0, 1, s).astype(np.float32) for i, s in enumerate(shapes)}
    want, got = _run_feeds(model, feeds)[0], _run_feeds(rewritten, feeds)[0]
    assert np.abs(got - want).max() < 1e-6 * np.abs(want).max()


@pytest.mark.parametrize(("shapes", "extra_reader"), [
    ([[1, 4, 6, 5], [1, 4, 1, 1]], False),  # a full-size factor is a product of two maps, not a gate
    ([[1, 1, 6, 1], [1, 4, 1, 1]], True),  # a product read elsewhere too
])
def test_factored_gates_leave_other_sums(shapes, extra_reader):
    model = _gates_graph(shapes, extra_reader)
    assert factored_gates(model).SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("opset", [17, 18])
def test_channel_means_first_shares_one_channel_mean(opset):
    """FR's descriptors: means over (C, F) and (C, T) read one 1x1 Conv's channel mean; means that keep the
    channels, and other tensors, stay as they are."""
    from glfer_edge.export.graph import channel_means_first

    reductions = [([1, 3], 0), ([1, 2], 1), ([2, 3], 1), ([3], 0)]  # (axes, keepdims)
    nodes, inits = [], []
    for i, (axes, keep) in enumerate(reductions):
        if opset >= 18:
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), f"axes{i}"))
            nodes.append(helper.make_node("ReduceMean", ["x", f"axes{i}"], [f"y{i}"], name=f"mean{i}", keepdims=keep))
        else:
            nodes.append(helper.make_node("ReduceMean", ["x"], [f"y{i}"], name=f"mean{i}", axes=axes, keepdims=keep))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 5])],
                              [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, shape) for i, shape in
                               enumerate([[1, 6], [1, 1, 1, 5], [1, 8, 1, 1], [1, 8, 6]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    rewritten = channel_means_first(model)
    onnx.checker.check_model(rewritten, full_check=True)
    convs = [n for n in rewritten.graph.node if n.op_type == "Conv"]
    assert len(convs) == 1 and convs[0].input[0] == "x"
    readers = {n.name: n.input[0] for n in rewritten.graph.node if n.op_type == "ReduceMean"}
    assert readers == {"mean0": convs[0].output[0], "mean1": convs[0].output[0], "mean2": "x", "mean3": "x"}
    feeds = {"x": np.random.default_rng(2).standard_normal((1, 8, 6, 5)).astype(np.float32)}
    for want, got in zip(_run_feeds(model, feeds), _run_feeds(rewritten, feeds)):
        assert want.shape == got.shape and np.abs(got - want).max() < 1e-6
