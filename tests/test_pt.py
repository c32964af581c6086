"""The PyTorch layer (sim/pt/): its tensor functions bit for bit against the golden model on
random and adversarial data, the lowering of ``Linear`` and ``Conv2d`` to GEMMs, ``convert``,
the ``SGD`` optimizer, and a short training run whose weights must equal, code for code, the
same steps computed by calling the golden model directly."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fp8accel.sim import golden as G  # noqa: E402
from fp8accel.sim import pt  # noqa: E402

FP8 = (G.E5M2, G.E4M3)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _operands(rng, kind, M, K, N, a_fmt, b_fmt):
    """FP8 codes of a kind of data: ``normal``, ``tiny`` (products that flush to signed
    zeros), ``cancel`` (equal and opposite products), ``huge`` (sums beyond DLFLOAT16: NaN),
    ``specials`` (Inf and NaN codes among the operands), ``saturated`` (the largest codes)."""
    if kind == "tiny":
        a = rng.choice([-1, 1], (M, K)) * 2.0 ** rng.integers(-17, -12, (M, K))
        b = rng.choice([-1, 1], (K, N)) * 2.0 ** rng.integers(-17, -12, (K, N))
    elif kind == "cancel":
        a = rng.standard_normal((M, K))
        a[:, 1::2] = -a[:, ::2][:, :K // 2]
        b = np.repeat(rng.standard_normal((K // 2 + 1, N)), 2, axis=0)[:K]
    elif kind in ("huge", "saturated"):
        a = np.full((M, K), 1e9) * rng.choice([1, -1], (M, K), p=[0.9, 0.1])
        b = np.full((K, N), 1e9 if kind == "huge" else 1e-3)
    else:
        a = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-6, 6)
        b = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-6, 6)
    A, B = G.encode(a, a_fmt, saturate=True), G.encode(b, b_fmt, saturate=True)
    if kind == "specials":
        A[0, 0] = G.encode(np.array(np.nan), a_fmt)
        B[-1, -1] = G.encode(np.array(np.inf), b_fmt)
    return A, B


# Tensor functions ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["normal", "tiny", "cancel", "huge", "saturated", "specials"])
@pytest.mark.parametrize("a_fmt, b_fmt", [(G.E5M2, G.E5M2), (G.E4M3, G.E5M2),
                                          (G.E5M2, G.E4M3)])
@pytest.mark.parametrize("rounding", ["rne", "rna"])
def test_gemm_is_golden_gemm(kind, a_fmt, b_fmt, rounding):
    rng = np.random.default_rng([len(kind), a_fmt.e, b_fmt.e, len(rounding)])
    A, B = _operands(rng, kind, 9, 70, 11, a_fmt, b_fmt)
    for chunk in (1, 3, 16, 64, None):
        want = G.gemm(A, B, a_fmt, b_fmt, chunk=chunk, rounding=rounding)
        got = pt.gemm(_t(A), _t(B), a_fmt, b_fmt, chunk=chunk, rounding=rounding)
        assert got.dtype == torch.uint16
        np.testing.assert_array_equal(got.numpy(), want, err_msg=f"chunk {chunk}")
        values = pt.gemm_values(_t(A), _t(B), a_fmt, b_fmt, chunk, rounding)
        np.testing.assert_array_equal(values.numpy(), G.decode(want, G.DLFLOAT16))
        np.testing.assert_array_equal(np.signbit(values.numpy()),
                                      np.signbit(G.decode(want, G.DLFLOAT16)))


def test_gemm_every_chunk_length():
    rng = np.random.default_rng(7)
    A, B = _operands(rng, "normal", 3, 37, 4, G.E5M2, G.E4M3)
    A *= 1
    results = set()
    for chunk in [*range(1, 40), None]:
        want = G.gemm(A, B, G.E5M2, G.E4M3, chunk=chunk)
        got = pt.gemm(_t(A), _t(B), G.E5M2, G.E4M3, chunk=chunk)
        np.testing.assert_array_equal(got.numpy(), want, err_msg=f"chunk {chunk}")
        results.add(want.tobytes())
    assert len(results) > 5          # the chunk length matters on these data


def test_gemm_long_k_transposed_views_c_and_out_fmt():
    """K = 4096 with positive terms (swamping without chunks), operands given as transposed
    views (non-contiguous tensors), accumulation into C and an FP8 output format."""
    rng = np.random.default_rng(3)
    A = G.encode(np.abs(rng.standard_normal((4096, 5))), G.E5M2)        # stored transposed
    B = G.encode(np.abs(rng.standard_normal((6, 4096))), G.E4M3)
    C = G.encode(rng.standard_normal((5, 6)) * 100, G.DLFLOAT16)
    At, Bt = _t(A).t(), _t(B).t()
    assert not At.is_contiguous()
    for chunk in (64, None):
        for out_fmt in (None, G.E5M2, G.DLFLOAT16):
            want = G.gemm(A.T, B.T, G.E5M2, G.E4M3, chunk=chunk, C=C, out_fmt=out_fmt)
            got = pt.gemm(At, Bt, G.E5M2, G.E4M3, chunk=chunk, C=_t(C), out_fmt=out_fmt)
            assert got.dtype == torch.from_numpy(want).dtype
            np.testing.assert_array_equal(got.numpy(), want)
    assert not np.array_equal(G.gemm(A.T, B.T, G.E5M2, G.E4M3, chunk=64),
                              G.gemm(A.T, B.T, G.E5M2, G.E4M3, chunk=None))


def test_gemm_other_formats_and_errors_are_golden():
    rng = np.random.default_rng(4)
    A = G.encode(rng.standard_normal((3, 5)), G.BINARY16)
    B = G.encode(rng.standard_normal((5, 2)), G.BINARY16)
    np.testing.assert_array_equal(
        pt.gemm(_t(A), _t(B), G.BINARY16, G.BINARY16, G.BINARY32, chunk=2).numpy(),
        G.gemm(A, B, G.BINARY16, G.BINARY16, G.BINARY32, chunk=2))
    a8 = torch.zeros((2, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"Shapes \(2, 3\) and \(2, 3\) do not form"):
        pt.gemm(a8, a8)
    with pytest.raises(ValueError, match="Chunk length must be a positive integer or None, "
                                         "not 0"):
        pt.gemm(a8, a8.t(), chunk=0)
    with pytest.raises(ValueError, match="must be a CPU tensor, not one on meta"):
        pt.gemm(torch.zeros((2, 2), dtype=torch.uint8, device="meta"), a8.t())


def _adversarial_values(fmt):
    """Every value of ``fmt``, the midpoints between neighbours (ties), points just beside
    them, beyond the largest value, below the smallest, signed zeros, Inf and NaN."""
    v = G.decode(np.arange(1 << fmt.width, dtype=G.code_dtype(fmt)), fmt)
    v = np.unique(v[np.isfinite(v) & (v > 0)])
    mid = (v[1:] + v[:-1]) / 2
    extra = [0.0, -0.0, np.inf, -np.inf, np.nan, v[-1] * 4, v[0] / 2, v[0] / 3, 1e300, 1e-300]
    x = np.concatenate([v, mid, np.nextafter(mid, 0), np.nextafter(mid, np.inf), extra])
    return np.concatenate([x, -x])


@pytest.mark.parametrize("fmt", [G.E5M2, G.E4M3, G.DLFLOAT16])
def test_encode_decode_convert_are_golden(fmt):
    x = _adversarial_values(G.E4M3 if fmt is G.DLFLOAT16 else fmt)
    if fmt is G.DLFLOAT16:
        x = np.concatenate([x, _adversarial_values(G.DLFLOAT16)[::7]])
    rnd = np.random.default_rng(1).integers(0, 1 << 16, x.shape)
    for rounding in ("rne", "rna", "rtz", "sr"):
        for saturate in (False, True):
            r = rnd if rounding == "sr" else None
            want = G.encode(x, fmt, rounding, saturate, r)
            got = pt.encode(_t(x), fmt, rounding, saturate, None if r is None else _t(r))
            assert got.dtype == torch.from_numpy(want).dtype
            np.testing.assert_array_equal(got.numpy(), want, err_msg=(rounding, saturate))
    # float32 tensors are their float64 values
    x32 = x[~(np.abs(x) > 1e30)].astype(np.float32)
    np.testing.assert_array_equal(pt.encode(_t(x32), fmt).numpy(), G.encode(x32, fmt))
    codes = np.arange(1 << fmt.width, dtype=G.code_dtype(fmt))
    np.testing.assert_array_equal(pt.decode(_t(codes), fmt).numpy(), G.decode(codes, fmt))
    if fmt is G.DLFLOAT16:
        for out in FP8:
            for rounding in ("rne", "rtz"):
                for saturate in (False, True):
                    np.testing.assert_array_equal(
                        pt.convert_codes(_t(codes), fmt, out, rounding, saturate).numpy(),
                        G.convert(codes, fmt, out, rounding, saturate))


@pytest.mark.parametrize("rounding", ["sr", "rne"])
def test_sgd_update_and_xorshift_are_golden(rounding):
    rng = np.random.default_rng(5)
    dl = G.DLFLOAT16
    w, g, v = (G.encode(rng.standard_normal((33, 7)) * s, dl) for s in (1, 100, 10))
    w[0, 0] = G.encode(np.array(np.nan), dl)
    lr, mu, wd = (int(G.encode(np.array(x), dl)) for x in (0.01 / 1024, 0.9, 5e-4 * 1024))
    want = G.sgd_update(w, g, v, lr, mu, wd, 12345, rounding)
    got = pt.sgd_update(_t(w), _t(g), _t(v), lr, torch.tensor(mu, dtype=torch.int32), wd,
                        12345, rounding)
    for a, b in zip(got, want):
        assert a.dtype == torch.uint16
        np.testing.assert_array_equal(a.numpy(), b)
    x = pt.xorshift32(99, 1000)
    assert x.dtype == torch.uint32
    np.testing.assert_array_equal(x.numpy(), G.xorshift32(99, 1000))


# Layers ---------------------------------------------------------------------------------------

def _small_ints(rng, shape, scale=1.0):
    """Values whose products and sums are exact in E4M3, E5M2 and DLFLOAT16 (small sums of
    small multiples of 1/2): with them every GEMM of a layer is exact, whatever the chunk."""
    return torch.from_numpy(rng.integers(-2, 3, shape) * scale)


@pytest.mark.parametrize("config", ["fp8", "hfp8"])
@pytest.mark.parametrize("geometry", [((3, 3), 1, 1), ((1, 5), (1, 2), (0, 1)), ((3, 3), 2, 0),
                                      ((2, 3), (2, 1), (1, 2)), ((3, 1), 3, 2)])
def test_conv2d_lowering_is_the_convolution(config, geometry):
    """Forward, backward (the flipped kernel over the spread, padded errors) and weight and
    bias gradients equal PyTorch's float64 convolution, exactly, on values for which every
    GEMM is exact."""
    kernel, stride, padding = geometry
    rng = np.random.default_rng(len(str(geometry)))
    ref = nn.Conv2d(3, 4, kernel, stride, padding).double()
    with torch.no_grad():
        ref.weight.copy_(_small_ints(rng, ref.weight.shape, 0.5))
        ref.bias.copy_(_small_ints(rng, ref.bias.shape))
    x = _small_ints(rng, (2, 3, 7, 9)).requires_grad_()
    y = ref(x)
    r = _small_ints(rng, y.shape)
    (y * r).sum().backward()
    want = (y.detach(), x.grad, ref.weight.grad, ref.bias.grad)
    x.grad = None
    model = pt.convert(nn.Sequential(ref), config)
    conv = model[0]
    assert isinstance(conv, pt.Conv2d) and conv.weight is ref.weight
    conv.weight.grad = conv.bias.grad = None
    y2 = model(x)
    (y2 * r).sum().backward()
    for name, got, w in zip(("y", "dx", "dw", "db"), (y2.detach(), x.grad, conv.weight.grad,
                                                      conv.bias.grad), want):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, w, rtol=0, atol=0, msg=name)


def test_layers_without_bias_and_with_more_dimensions():
    """No bias: no column of ones and no bias row. A Linear layer on a 3-d input works on its
    last dimension, as PyTorch's does."""
    rng = np.random.default_rng(9)
    for ref, shape in ((nn.Conv2d(2, 3, 3, 2, 1, bias=False), (2, 2, 5, 6)),
                       (nn.Linear(4, 3, bias=False), (2, 5, 4))):
        ref = ref.double()
        with torch.no_grad():
            ref.weight.copy_(_small_ints(rng, ref.weight.shape, 0.5))
        x = _small_ints(rng, shape).requires_grad_()
        y = ref(x)
        r = _small_ints(rng, y.shape)
        (y * r).sum().backward()
        want = (y.detach(), x.grad, ref.weight.grad)
        x.grad = ref.weight.grad = None
        layer = pt.convert(nn.Sequential(ref), "fp8")[0]
        assert layer.bias is None and type(layer) in (pt.Conv2d, pt.Linear)
        y2 = layer(x)
        (y2 * r).sum().backward()
        for got, w in zip((y2.detach(), x.grad, layer.weight.grad), want):
            torch.testing.assert_close(got, w, rtol=0, atol=0)


def test_linear_lowering_and_the_gemms_it_runs():
    """A Linear layer's forward, backward and weight-gradient GEMMs are golden.gemm on the
    operands docs/training.md describes, with the bias row and the column of ones."""
    rng = np.random.default_rng(8)
    config = pt.CONFIGS["hfp8"].replace(chunk=4)
    layer = pt.convert(nn.Sequential(nn.Linear(7, 5)).double(), config)[0]
    x = torch.from_numpy(rng.standard_normal((6, 7))).requires_grad_()
    seen = []
    with pt.observe(lambda *args: seen.append(args)):
        y = layer(x)
        dy = torch.from_numpy(rng.standard_normal(y.shape) * 100)
        y.backward(dy)
    assert [s[0] for s in seen] == ["forward", "wgrad", "backward"]
    fwd, bwd = G.E4M3, G.E5M2
    xq = G.encode(x.detach().numpy(), fwd, "rne", saturate=True)
    a = np.concatenate([xq, np.full((6, 1), G.encode(np.array(1.0), fwd))], axis=1)
    wm = G.encode(layer.weight.detach().numpy(), G.DLFLOAT16)
    bm = G.encode(layer.bias.detach().numpy(), G.DLFLOAT16)
    wq = G.convert(wm, G.DLFLOAT16, fwd, "rne", saturate=True)
    b = np.concatenate([wq.T, G.convert(bm, G.DLFLOAT16, fwd, "rne", saturate=True)[None]])
    e = G.encode(dy.numpy(), bwd, "rne", saturate=True)
    dl = G.DLFLOAT16
    np.testing.assert_array_equal(y.detach().numpy(),
                                  G.decode(G.gemm(a, b, fwd, fwd, chunk=4), dl))
    g = G.decode(G.gemm(a.T, e, fwd, bwd, chunk=4), dl)
    np.testing.assert_array_equal(layer.weight.grad.numpy(), g[:7].T)
    np.testing.assert_array_equal(layer.bias.grad.numpy(), g[7])
    np.testing.assert_array_equal(x.grad.numpy(), G.decode(G.gemm(e, wq, bwd, fwd, chunk=4), dl))


def test_convert_swaps_layers_and_keeps_parameters():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                          nn.Sequential(nn.Linear(8, 4), nn.ReLU()), nn.Linear(4, 3))
    params = list(model.parameters())
    assert pt.convert(model, "fp32") is model and type(model[0]) is nn.Conv2d
    pt.convert(model, pt.CONFIGS["fp8"].replace(first_last="fp32"))
    assert type(model[0]) is nn.Conv2d and type(model[4]) is nn.Linear
    assert type(model[3][0]) is pt.Linear and model[3][0].name == "3.0"
    pt.convert(model, "hfp8")
    assert [type(m) for m in (model[0], model[3][0], model[4])] == [pt.Conv2d, pt.Linear,
                                                                    pt.Linear]
    assert all(m.numerics.name == "hfp8" for m in (model[0], model[3][0], model[4]))
    assert list(model.parameters()) == params and all(
        a is b for a, b in zip(model.parameters(), params))
    assert "numerics=hfp8" in repr(model)
    with pytest.raises(ValueError, match="Config must be one of fp32, fp8, hfp8, fp8-nochunk, "
                                         "fp8-rne, not 'fp4'"):
        pt.convert(model, "fp4")
    with pytest.raises(ValueError, match=r"Conv2d with groups=2, dilation=\(2, 2\) has no "
                                         "lowering"):
        pt.convert(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2, dilation=2)), "fp8")
    with pytest.raises(ValueError, match="fwd must be e5m2 or e4m3, not 'dlfloat16'"):
        pt.Numerics("x", fwd="dlfloat16")


def test_sgd_rounds_to_dlfloat16_and_resumes_its_seed_stream():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    w0 = layer.weight.detach().clone()
    opt = pt.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, seed=7)
    m = opt.master(layer.weight)
    assert m.dtype == torch.uint16
    np.testing.assert_array_equal(m.numpy(), G.encode(w0.numpy(), G.DLFLOAT16))
    assert torch.equal(layer.weight.detach().double(), pt.decode(m, G.DLFLOAT16))
    assert not torch.equal(layer.weight.detach(), w0)        # rounded
    layer.weight.grad = torch.ones_like(layer.weight)
    layer.bias.grad = torch.ones_like(layer.bias)
    state = opt.state_dict()
    opt.step()
    assert opt.param_groups[0]["seed"] == int(G.xorshift32(int(G.xorshift32(7, 1)[0]), 1)[0])
    with pytest.raises(ValueError, match="Seed must be an integer from 1 to 2..32 - 1, not 0"):
        pt.SGD(layer.parameters(), lr=0.1, seed=0)
    with pytest.raises(ValueError, match="Learning rate must be positive, not 0"):
        pt.SGD(layer.parameters(), lr=0)
    opt.load_state_dict(state)
    assert opt.param_groups[0]["seed"] == 7


# One training run, two ways -------------------------------------------------------------------

def _golden_mlp_steps(params, xs, ys, numerics, lr, momentum, wd, seed, steps):
    """The steps of :func:`test_training_run_is_bit_identical_to_the_golden_model`, written out
    with the golden model alone: forward, softmax cross-entropy, backward, and one
    ``sgd_update`` per parameter with seeds from the xorshift32 seed stream."""
    dl, fwd, bwd = G.DLFLOAT16, numerics.fwd_fmt, numerics.bwd_fmt
    S, chunk = numerics.loss_scale, numerics.chunk
    one = G.encode(np.array(1.0), fwd)
    master = [(G.encode(w, dl), G.encode(b, dl)) for w, b in params]
    mom = [(np.zeros(w.shape, np.uint16), np.zeros(b.shape, np.uint16)) for w, b in master]
    lr_c, mu_c, wd_c = (int(G.encode(np.array(v), dl)) for v in (lr / S, momentum, wd * S))
    stream = seed
    for step in range(steps):
        x, y = xs[step], ys[step]
        h, acts, wqs, masks = x, [], [], []
        for i, (w, b) in enumerate(master):
            a = np.concatenate([G.encode(h, fwd, "rne", saturate=True),
                                np.full((len(h), 1), one)], axis=1)
            wq = G.convert(w, dl, fwd, "rne", saturate=True)
            bq = G.convert(b, dl, fwd, "rne", saturate=True)
            out = G.decode(G.gemm(a, np.concatenate([wq.T, bq[None]]), fwd, fwd, chunk=chunk),
                           dl)
            acts.append(a)
            wqs.append(wq)
            if i < len(master) - 1:
                masks.append(out > 0)
                out = np.maximum(out, 0)
            h = out
        p = np.exp(h - h.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        d = p / len(y) * S
        grads = [None] * len(master)
        for i in reversed(range(len(master))):
            e = G.encode(d, bwd, "rne", saturate=True)
            g = G.gemm(acts[i].T, e, fwd, bwd, chunk=chunk)
            n_in = wqs[i].shape[1]
            grads[i] = (np.ascontiguousarray(g[:n_in].T), g[n_in])
            if i > 0:
                d = G.decode(G.gemm(e, wqs[i], bwd, fwd, chunk=chunk), dl) * masks[i - 1]
        for i in range(len(master)):
            new_m, new_v = [], []
            for j in range(2):
                stream = int(G.xorshift32(stream, 1)[0])
                w1, v1 = G.sgd_update(master[i][j], grads[i][j], mom[i][j], lr_c, mu_c, wd_c,
                                      stream, numerics.update)
                new_m.append(w1)
                new_v.append(v1)
            master[i], mom[i] = tuple(new_m), tuple(new_v)
    return master, mom


@pytest.mark.parametrize("config", ["fp8", "hfp8", "fp8-rne"])
def test_training_run_is_bit_identical_to_the_golden_model(config):
    """Four steps of a 20-16-12-5 MLP on batches of 10 through pt.convert, autograd and
    pt.SGD, against the same steps written out with golden.gemm and golden.sgd_update: every
    master weight and momentum code equal. Chunk 4, so that chunking matters here."""
    from fp8accel.sim.experiments.train import mlp_from_arrays, train_step
    numerics = pt.CONFIGS[config].replace(chunk=4)
    rng = np.random.default_rng(11)
    sizes, steps = (20, 16, 12, 5), 4
    params = [(rng.standard_normal((o, i)) * np.sqrt(2 / i), rng.uniform(-0.1, 0.1, o))
              for i, o in zip(sizes[:-1], sizes[1:])]
    params = [tuple(G.decode(G.encode(v, G.DLFLOAT16), G.DLFLOAT16) for v in p) for p in params]
    xs = [rng.uniform(0, 1, (10, 20)) for _ in range(steps)]
    ys = [rng.integers(0, 5, 10) for _ in range(steps)]
    model = pt.convert(mlp_from_arrays(params), numerics)
    opt = pt.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4,
                 loss_scale=numerics.loss_scale, rounding=numerics.update, seed=4242)
    for x, y in zip(xs, ys):
        train_step(model, opt, torch.from_numpy(x), y, numerics.loss_scale)
    master, mom = _golden_mlp_steps(params, xs, ys, numerics, 0.05, 0.9, 5e-4, 4242, steps)
    got = list(model.parameters())
    for i in range(len(master)):
        for j in range(2):
            p = got[2 * i + j]
            np.testing.assert_array_equal(opt.master(p).numpy(), master[i][j])
            np.testing.assert_array_equal(opt.momentum(p).numpy(), mom[i][j])
            assert torch.equal(p.detach(), pt.decode(opt.master(p), G.DLFLOAT16))
    w0 = G.encode(params[0][0], G.DLFLOAT16)
    assert (master[0][0] != w0).mean() > 0.5                      # the weights moved


# Without PyTorch --------------------------------------------------------------------------------

@pytest.mark.parametrize("missing, dataset, hint", [
    ("torch", [], 'PyTorch is not installed: pip install -e ".[torch]" '
                  '(or pip install torch==2.13.0 mnist1d)'),
    ("mnist1d", ["--dataset", "mnist1d"], 'mnist1d is not installed: pip install -e ".[torch]" '
                                          '(or pip install mnist1d)'),
])
def test_train_without_torch_says_what_to_install(tmp_path, missing, dataset, hint):
    argv = ["train", *dataset, "--model", "mlp", "--config", "fp8", "--json", "r.json"]
    code = (f"import sys; sys.modules[{missing!r}] = None\n"
            "from fp8accel.sim.cli import main\n"
            f"sys.exit(main({argv!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"fp8accel train: error: {hint}"]
    assert not (tmp_path / "r.json").exists()
