"""Invalid schedules raise lathe.ScheduleError naming the stage and the axis; bad kernel calls raise
lathe.ArgumentError naming the argument. Names are distinctive so a match cannot be an accident."""

import numpy as np
import pytest

import lathe
from lathe import te


def program():
    """Src -> Mid -> Out (a row reduction over `kred`), and Other, an unrelated second output."""
    Src = te.placeholder((8, 6, 4), name="Src")
    Mid = te.compute((8, 6, 4), lambda row, col, dep: Src[row, col, dep] + 1.0, name="Mid")
    kred = te.reduce_axis(4, "kred")
    Out = te.compute((8, 6), lambda orow, ocol: te.sum(Mid[orow, ocol, kred], axis=kred), name="Out")
    Other = te.compute((8,), lambda solo: Src[solo, 0, 0] * 2.0, name="Other")
    s = te.create_schedule([Out, Other])
    return s, Src, Mid, Out, Other


def split_twice(s, Src, Mid, Out, Other):
    row = Mid.op.axis[0]
    s[Mid].split(row, factor=2)
    s[Mid].split(row, factor=4)


def compute_at_unrelated_stage(s, Src, Mid, Out, Other):
    s[Mid].compute_at(s[Other], Other.op.axis[0])


def vectorize_reduction(s, Src, Mid, Out, Other):
    s[Out].vectorize(Out.op.reduce_axis[0])


def parallel_reduction(s, Src, Mid, Out, Other):
    s[Out].parallel(Out.op.reduce_axis[0])


def reorder_axes_of_another_stage(s, Src, Mid, Out, Other):
    s[Out].reorder(Out.op.axis[1], Mid.op.axis[0])


def split_axis_of_another_stage(s, Src, Mid, Out, Other):
    s[Out].split(Mid.op.axis[2], factor=2)


def fuse_non_adjacent(s, Src, Mid, Out, Other):
    row, col, dep = Mid.op.axis
    s[Mid].fuse(row, dep)


def fuse_data_with_reduction(s, Src, Mid, Out, Other):
    s[Out].fuse(Out.op.axis[1], Out.op.reduce_axis[0])


def bind_unknown_tag(s, Src, Mid, Out, Other):
    s[Mid].bind(Mid.op.axis[1], "threadIdx.w")


def compute_inline_reduction(s, Src, Mid, Out, Other):
    s[Out].compute_inline()


def compute_at_target_axis_not_a_leaf(s, Src, Mid, Out, Other):
    orow = Out.op.axis[0]
    s[Out].split(orow, factor=2)
    s[Mid].compute_at(s[Out], orow)


def annotate_then_split(s, Src, Mid, Out, Other):
    s[Mid].unroll(Mid.op.axis[2])
    s[Mid].split(Mid.op.axis[2], factor=2)


# name: (mistake, stage the message must name, axis the message must name)
MISTAKES = {
    "split_twice": (split_twice, "Mid", "row"),
    "compute_at_unrelated_stage": (compute_at_unrelated_stage, "Mid", "solo"),
    "vectorize_reduction": (vectorize_reduction, "Out", "kred"),
    "parallel_reduction": (parallel_reduction, "Out", "kred"),
    "reorder_axes_of_another_stage": (reorder_axes_of_another_stage, "Out", "row"),
    "split_axis_of_another_stage": (split_axis_of_another_stage, "Out", "dep"),
    "fuse_non_adjacent": (fuse_non_adjacent, "Mid", "dep"),
    "fuse_data_with_reduction": (fuse_data_with_reduction, "Out", "kred"),
    "bind_unknown_tag": (bind_unknown_tag, "Mid", "col"),
    "compute_inline_reduction": (compute_inline_reduction, "Out", "kred"),
    "compute_at_target_axis_not_a_leaf": (compute_at_target_axis_not_a_leaf, "Out", "orow"),
    "annotate_then_split": (annotate_then_split, "Mid", "dep"),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_invalid_schedule_names_stage_and_axis(name):
    mistake, stage, axis = MISTAKES[name]
    with pytest.raises(lathe.ScheduleError) as info:
        mistake(*program())
    message = str(info.value)
    assert stage in message and axis in message, f"{name}: message {message!r} should name {stage} and {axis}"


def test_bind_message_names_the_bad_tag():
    s, Src, Mid, Out, Other = program()
    with pytest.raises(lathe.ScheduleError, match="threadIdx.w"):
        s[Mid].bind(Mid.op.axis[1], "threadIdx.w")


def test_compute_inline_of_an_elementwise_output():
    s, Src, Mid, Out, Other = program()
    with pytest.raises(lathe.ScheduleError, match="Other"):
        s[Other].compute_inline()


def test_compute_at_with_a_second_reader_outside_the_loop():
    """Shared is attached inside First's loop, but Second reads it too: lowering must refuse."""
    Src = te.placeholder((6, 4), name="Src")
    Shared = te.compute((6, 4), lambda r, c: Src[r, c] + 1.0, name="Shared")
    First = te.compute((6, 4), lambda frow, fcol: Shared[frow, fcol] * 2.0, name="First")
    Second = te.compute((6, 4), lambda r, c: Shared[5 - r, c] * 3.0, name="Second")
    s = te.create_schedule([First, Second])
    s[Shared].compute_at(s[First], First.op.axis[0])
    with pytest.raises(lathe.ScheduleError) as info:
        lathe.lower(s, [Src, First, Second])
    assert all(name in str(info.value) for name in ("Shared", "Second", "frow")), str(info.value)


def test_schedule_error_is_a_value_error():
    assert issubclass(lathe.ScheduleError, ValueError)
    assert issubclass(lathe.ArgumentError, ValueError)


def test_valid_schedule_of_the_same_program_builds():
    """The mistakes above are mistakes: the same program with a valid schedule builds and runs."""
    s, Src, Mid, Out, Other = program()
    s[Mid].compute_at(s[Out], Out.op.axis[0])
    kernel = lathe.build(s, [Src, Out, Other], target="llvm")
    src = np.arange(8 * 6 * 4, dtype="float32").reshape(8, 6, 4)
    out, other = np.zeros((8, 6), "float32"), np.zeros(8, "float32")
    kernel(src, out, other)
    np.testing.assert_allclose(out, (src + 1).sum(axis=2), rtol=1e-5)
    np.testing.assert_allclose(other, src[:, 0, 0] * 2, rtol=1e-5)


# ----------------------------------------------------------------------------- calling a kernel wrongly


@pytest.fixture
def saxpy(target):
    Xin = te.placeholder((5, 3), name="Xin")
    Yin = te.placeholder((5, 3), name="Yin")
    Zout = te.compute((5, 3), lambda i, j: Xin[i, j] * 2.0 + Yin[i, j], name="Zout")
    return lathe.build(te.create_schedule(Zout), [Xin, Yin, Zout], target=target)


def good_args():
    return [np.ones((5, 3), "float32"), np.ones((5, 3), "float32"), np.zeros((5, 3), "float32")]


def with_replaced(position, array):
    args = good_args()
    args[position] = array
    return args


BAD_CALLS = {  # name: (arguments, a name the message must contain)
    "too_few": (good_args()[:2], "Zout"),
    "too_many": (good_args() + [np.zeros((5, 3), "float32")], "Zout"),
    "none": ([], "Xin"),
    "wrong_shape_input": (with_replaced(1, np.ones((3, 5), "float32")), "Yin"),
    "wrong_rank_output": (with_replaced(2, np.zeros(15, "float32")), "Zout"),
    "wrong_dtype_input": (with_replaced(0, np.ones((5, 3), "float64")), "Xin"),
    "wrong_dtype_output": (with_replaced(2, np.zeros((5, 3), "int32")), "Zout"),
    "wrong_dtype_nd_array": (with_replaced(1, lathe.nd.array(np.ones((5, 3), "int32"))), "Yin"),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_kernel_call_names_the_argument(name, saxpy):
    args, argument = BAD_CALLS[name]
    with pytest.raises(lathe.ArgumentError, match=argument):
        saxpy(*args)


def test_good_call_after_bad_calls_still_works(saxpy):
    for args, _ in BAD_CALLS.values():
        with pytest.raises(lathe.ArgumentError):
            saxpy(*args)
    args = good_args()
    saxpy(*args)
    np.testing.assert_allclose(args[2], 3.0)
