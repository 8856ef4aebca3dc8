"""minLSTM and minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): recurrences as one scan.

A classic LSTM's gates read h_{t-1}, so T steps are T dependent matrix products. minGRU and
minLSTM compute their gates from the input x_t alone:

    minGRU:   z_t = sigmoid(k_z),  h~_t = g(k_h),
              h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
    minLSTM:  f_t = sigmoid(k_f),  i_t = sigmoid(k_i),  h~_t = g(k_h),
              f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)        (normalised gates)
              h_t = f'_t * h_{t-1} + i'_t * h~_t

with `k = x_t W + bias` and g(x) = x + 0.5 for x >= 0, sigmoid(x) below: a positive candidate.
Every step is h_t = a_t * h_{t-1} + b_t with a_t in (0, 1), so a whole chunk is one parallel
scan (`longstm.models.scan`) instead of T dependent matrix products when training, and the
same O(1) update per step when streaming (`mode="sequential"`).

Log space and the sign of h. For the log-space scans the gates are written as in the paper
(`-softplus` for log-sigmoid, `softplus(-k_f) - softplus(-k_i)` for the normalised gates); the
linear-space default computes f / (f + i) from two sigmoids, the same function without the
costlier softplus. The paper's two log-space scans are available (`scan="associative"`, `scan="logcumsumexp"`).
They need b_t > 0, which the positive candidate g(.) guarantees, so h is positive from a zero
state. The carried state h0 never goes through a logarithm: it enters every scan exactly as
`prod(a) * h0 + h_from_zero`, so a state of any sign (zeros after a lane reset, a state set
by hand) is valid and chunked-with-carry equals the full forward. The default scan
(`"blocked"`) runs in linear space: it never divides by a cumulative product, so it needs no
logarithms to stay stable, and it measured the fastest and the most accurate here.

Speed. On TensorFlow, chunks longer than `FUSED_MIN_STEPS` are projected and scanned
`SUB_CHUNK` steps at a time with the backward pass recomputing each piece
(`longstm.models.scan.fused_projected_scan`), so only x and h are kept per layer; the whole
loop over the pieces is one XLA program per direction (`FUSED_XLA`), and the gates' gradient is
written in closed form (`coefficient_gradient`). This trades depth for cache locality:
`blocked_scan` alone is about `64 * log_64(T)` elementwise ops deep, the fused path walks its
T/256 sub-chunks one after another (about 32 ops deep each) — on a few CPU cores memory
traffic and per-op overhead, not depth, are what limit. The module constants are read when a
step is traced (none of this has been measured on a GPU). Measured on a 2-core CPU
(docs/RESULTS.md), one train step of `MinLSTM(64)` took 1/11.6 and 1/12.9 of
`keras.layers.LSTM(64)`'s at 4096 steps (medians of 15 rounds; 1/9.5 to 1/12 in shorter runs),
`MinGRU(64)` about 1/16; the factor grows from 512 to 4096 steps and mostly beyond.

What the speed costs. The gates cannot see h_{t-1}, so one layer can only mix its past
linearly with input-dependent decays: no multiplicative interaction between the state and
the new input inside a step. Depth (stacked blocks with MLPs) has to make up for it; the paper
reports parity with Transformers on its benchmarks, but on a given forecasting task a stack
of these may need more layers than an LSTM. Measured on the ETT protocol at H = 96
(docs/RESULTS.md, 2 blocks of 64): ETTh1 minGRU 0.506 / minLSTM 0.528 test MSE against a
64-unit LSTM's 0.462; ETTm1 minGRU 0.487 (the LSTM's too), minLSTM 0.474.
In float32 linear space a decay closer to 1 than 6e-8 rounds to exactly 1 (memory time
constants beyond ~10^7 steps become perfect memory); the log-space scans do not round there.
"""

from __future__ import annotations

import keras
from keras import ops

from longstm.errors import DataValidationError
from longstm.models.protocol import RecurrentModel, State
from longstm.models.scan import (
    SCAN_METHODS,
    associative_log_scan,
    blocked_scan,
    fused_projected_scan,
    logcumsumexp_scan,
    sequential_scan,
)
from longstm.models.checks import check_choice, check_positive_int

MODES = ("parallel", "sequential")
CELLS = ("minlstm", "mingru")
# The fused TensorFlow path (`fused_projected_scan`) takes chunks longer than FUSED_MIN_STEPS,
# SUB_CHUNK steps at a time, with a scan block of FUSED_BLOCK; when FUSED_XLA the loop over the
# sub-chunks is one XLA program per direction, else a `tf.scan` of uncompiled pieces. Measured on
# a 2-core CPU (docs/RESULTS.md): uncompiled it was about 2x faster than the one-piece scan at
# 4096 steps and slower at 512; compiled it is faster at 512 too, and 256 / 16 beat 128 and 512
# steps per piece and blocks of 8 and 32.
FUSED_MIN_STEPS = 256
SUB_CHUNK = 256
FUSED_BLOCK = 16
FUSED_XLA = True


def candidate(x):
    """g(x) = x + 0.5 for x >= 0, sigmoid(x) below: continuous, increasing and positive."""
    return ops.where(x >= 0, x + 0.5, ops.sigmoid(x))


def candidate_and_slope(x):
    """g(x) and g'(x): 1 for x >= 0, sigmoid(x) * (1 - sigmoid(x)) below."""
    positive = x >= 0
    below = ops.sigmoid(x)
    return ops.where(positive, x + 0.5, below), ops.where(positive, 1.0, below * (1.0 - below))


def log_candidate(x):
    """log g(x), computed without forming g(x) where it underflows."""
    return ops.where(x >= 0, ops.log(ops.relu(x) + 0.5), -ops.softplus(-x))


class _MinRecurrence(RecurrentModel):
    """What minLSTM and minGRU share: the input projection, the state, the scan."""

    gate_count: int  # projections per unit: 3 for minLSTM (f, i, h~), 2 for minGRU (z, h~)

    def __init__(
        self,
        units: int,
        mode: str = "parallel",
        scan: str = "blocked",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.units = check_positive_int(owner, "units", units)
        self.mode = check_choice(owner, "mode", mode, MODES)
        self.scan = check_choice(owner, "scan", scan, SCAN_METHODS)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise DataValidationError(
                f"{type(self).__name__} expects inputs of shape (batch, steps, features) with a known "
                f"number of features; got shape {tuple(input_shape)}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.gate_count * self.units), initializer=self.kernel_initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.gate_count * self.units,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        self.built = True

    def initial_state(self, batch_size: int) -> State:
        return (ops.zeros((batch_size, self.units), self.compute_dtype),)

    def _check_state(self, state, inputs):
        if not isinstance(state, (tuple, list)) or len(state) != 1:
            raise DataValidationError(
                f"{type(self).__name__} state must be a tuple with one tensor h of shape (batch, {self.units}); "
                f"got {type(state).__name__} of length {len(state) if isinstance(state, (tuple, list)) else '-'}."
            )
        h0 = state[0]
        shape = tuple(h0.shape)
        batch = inputs.shape[0]
        if len(shape) != 2 or shape[1] != self.units or (None not in (shape[0], batch) and shape[0] != batch):
            raise DataValidationError(
                f"{type(self).__name__} state h must have shape ({batch}, {self.units}); got {shape}."
            )
        return ops.cast(h0, self.compute_dtype)

    def call(self, inputs, state=None, training=None):
        if len(inputs.shape) != 3 or inputs.shape[1] == 0:
            raise DataValidationError(
                f"{type(self).__name__} expects inputs of shape (batch, steps, features) with at least one "
                f"step; got shape {tuple(inputs.shape)}."
            )
        h0 = self.initial_state(ops.shape(inputs)[0])[0] if state is None else self._check_state(state, inputs)
        steps = inputs.shape[1]
        parallel = self.mode == "parallel" and steps is not None
        if parallel and self.scan == "blocked" and steps > FUSED_MIN_STEPS and keras.backend.backend() == "tensorflow":
            # `.value` is autocast to the compute dtype under a mixed-precision policy.
            bias = self.bias.value if self.use_bias else None
            h = fused_projected_scan(
                inputs,
                self.kernel.value,
                bias,
                h0,
                # Class-level functions: one XLA compilation serves every layer of a class.
                type(self).coefficients,
                SUB_CHUNK,
                FUSED_BLOCK,
                coefficient_gradient=type(self).coefficient_gradient,
                jit_compile=FUSED_XLA,
            )
            return h, (h[:, -1],)
        projections = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            projections = projections + self.bias
        if parallel and self.scan != "blocked":
            log_a, log_b = self.log_coefficients(projections)
            scan = associative_log_scan if self.scan == "associative" else logcumsumexp_scan
            h = scan(log_a, log_b, h0)
        elif parallel:
            h = blocked_scan(*self._differentiable_coefficients(projections), h0)
        else:  # streaming, or a symbolic call with an unknown number of steps
            h = sequential_scan(*self.coefficients(projections), h0)
        return h, (h[:, -1],)

    def step(self, x_t, state):
        """One step, h_t = a_t * h_{t-1} + b_t: no scan for a single step."""
        h0 = self._check_state(state, x_t)
        projections = ops.matmul(x_t, self.kernel)
        if self.use_bias:
            projections = projections + self.bias
        keep, b = self.coefficients(projections)
        h = keep * h0 + b
        return h, (h,)

    @classmethod
    def coefficient_gradient(cls, projections, keep, grad_keep, grad_input):
        """The gradient of `coefficients` in closed form: dL/d projections from dL/da, dL/db.

        With a = keep and b = (1 - keep) * g(k_h): dL/dk_h = dL/db (1 - keep) g'(k_h), and
        dL/d keep = dL/da - dL/db g(k_h) goes to the gate logits through `_gate_logit_gradient`.
        A handful of elementwise ops instead of autodiff's several dozen over the same tensors.
        """
        units = projections.shape[-1] // cls.gate_count
        gate_logits, candidate_logit = projections[..., :-units], projections[..., -units:]
        value, slope = candidate_and_slope(candidate_logit)
        release = 1.0 - keep
        keep_logit_grad = (grad_keep - grad_input * value) * keep * release
        return ops.concatenate(
            [*cls._gate_logit_gradient(gate_logits, keep_logit_grad), grad_input * release * slope], axis=-1
        )

    def _differentiable_coefficients(self, projections):
        """`coefficients` with `coefficient_gradient` as its gradient."""

        @ops.custom_gradient
        def coefficients(projections):
            keep, b = self.coefficients(projections)

            def grad(*args, upstream=None):
                grad_keep, grad_input = upstream if upstream is not None else args
                return self.coefficient_gradient(projections, keep, grad_keep, grad_input)

            return (keep, b), grad

        return coefficients(projections)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            mode=self.mode,
            scan=self.scan,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


_DOC_ARGS = """
    Args:
        units: width of the state h (positive integer).
        mode: `"parallel"` (one scan over the chunk: for training and long chunks) or
            `"sequential"` (a step loop: for streaming a few steps at a time). Both compute the
            same function (max abs difference ~1e-6 in float32 at 10^4 steps).
        scan: the parallel scan: `"blocked"` (linear-space blocked scan, the fastest here),
            `"associative"` (log space, `keras.ops.associative_scan`, any backend) or
            `"logcumsumexp"` (log space, the paper's cumsum formulation, TensorFlow only,
            float64 inside). See `longstm.models.scan`.
        use_bias: add a bias to the gate and candidate projections.
        kernel_initializer, bias_initializer: for those projections.

    Call arguments:
        inputs: `(batch, steps, features)`.
        state: `(h,)` with h of shape `(batch, units)`, any sign; `None` for zeros.
        training: unused (no dropout inside the recurrence).

    Returns:
        `(outputs, new_state)`: h at every step, `(batch, steps, units)`, and `(h_last,)`.
        From a zero state h is positive (the candidates are).
"""


@keras.saving.register_keras_serializable(package="longstm")
class MinGRU(_MinRecurrence):
    __doc__ = (
        """minGRU: h_t = (1 - z_t) * h_{t-1} + z_t * g(k_h), gates from the input only.
"""
        + _DOC_ARGS
        + """
    Example:

    >>> layer = MinGRU(64)
    >>> state = layer.initial_state(16)
    >>> for chunk in chunks:                  # (16, 4096, features) each
    ...     h, state = layer(chunk, state=state)
    """
    )

    gate_count = 2

    @staticmethod
    def coefficients(projections):
        update_logit, candidate_logit = ops.split(projections, 2, axis=-1)
        keep = ops.sigmoid(-update_logit)
        return keep, (1.0 - keep) * candidate(candidate_logit)

    @staticmethod
    def _gate_logit_gradient(update_logit, keep_logit_grad):
        # keep = sigmoid(-k_z): d keep / d k_z = -keep (1 - keep).
        return (-keep_logit_grad,)

    def log_coefficients(self, projections):
        update_logit, candidate_logit = ops.split(projections, 2, axis=-1)
        return -ops.softplus(update_logit), -ops.softplus(-update_logit) + log_candidate(candidate_logit)


@keras.saving.register_keras_serializable(package="longstm")
class MinLSTM(_MinRecurrence):
    __doc__ = (
        """minLSTM: h_t = f'_t * h_{t-1} + i'_t * g(k_h), normalised gates from the input only.
"""
        + _DOC_ARGS
        + """
    Example:

    >>> model = Forecaster(MinLSTM(64), outputs=1)
    >>> y, state = model(x_chunk)
    >>> y, state = model(next_chunk, state=state)
    """
    )

    gate_count = 3

    @staticmethod
    def _log_gate_ratio(forget_logit, input_logit):
        # log(i / f) with f = sigmoid(k_f), i = sigmoid(k_i); f' = sigmoid(-d), i' = sigmoid(d).
        return ops.softplus(-forget_logit) - ops.softplus(-input_logit)

    @staticmethod
    def _gates(forget_logit, input_logit):
        # f / (f + i) is sigmoid(-_log_gate_ratio) without its two softplus (each about three
        # sigmoids' work). Both gates below sigmoid(-60) could underflow to 0 / 0; there
        # sigmoid(k) = exp(k) to float precision and the ratio is shift-invariant, so the logits
        # are shifted up until the larger one is -60 (where that happens, 1 - f and 1 - i are
        # 1 to float precision with or without the shift, as the gradient below needs).
        shift = ops.maximum(-60.0 - ops.maximum(forget_logit, input_logit), 0.0)
        return ops.sigmoid(forget_logit + shift), ops.sigmoid(input_logit + shift)

    @classmethod
    def coefficients(cls, projections):
        forget_logit, input_logit, candidate_logit = ops.split(projections, 3, axis=-1)
        forget, input_gate = cls._gates(forget_logit, input_logit)
        keep = forget / (forget + input_gate)
        return keep, (1.0 - keep) * candidate(candidate_logit)

    @classmethod
    def _gate_logit_gradient(cls, gate_logits, keep_logit_grad):
        # keep = f / (f + i): d keep / d k_f = keep (1 - keep) (1 - f), and
        # d keep / d k_i = -keep (1 - keep) (1 - i). The gates are the same expressions as in
        # `coefficients`, so in the compiled backward pass (which recomputes `coefficients`
        # first) XLA computes them once: 1 - f instead of sigmoid(-k_f) saves two sigmoids.
        forget, input_gate = cls._gates(*ops.split(gate_logits, 2, axis=-1))
        return keep_logit_grad * (1.0 - forget), -keep_logit_grad * (1.0 - input_gate)

    def log_coefficients(self, projections):
        forget_logit, input_logit, candidate_logit = ops.split(projections, 3, axis=-1)
        ratio = self._log_gate_ratio(forget_logit, input_logit)
        return -ops.softplus(ratio), -ops.softplus(-ratio) + log_candidate(candidate_logit)
