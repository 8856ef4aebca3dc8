"""Scans of the first-order linear recurrence h_t = a_t * h_{t-1} + b_t over a time axis.

This is the whole recurrent part of minLSTM / minGRU (`longstm.models.minrnn`): their gates
depend on the input only, so a chunk of T steps is one scan instead of T dependent steps.

Three parallel formulations, all `(batch, steps, units)`, with the carried state `h0` of
shape `(batch, units)` entering exactly:

- `blocked_scan` (the default of the layers): a two-level (recursively blocked) scan in
  linear space. The time axis is cut into blocks of `block` steps; one Python-unrolled loop
  of `block` steps runs over all blocks at once (every op works on `(batch, steps/block,
  units)`), the block ends are scanned recursively, and one multiply-add spreads the carried
  state into each block. Depth `block * log_block(T)` ops, one pass over memory per level.
  Its gradient is written by hand (`_blocked_scan_with_gradient`): the adjoint of a linear
  recurrence is the same recurrence run backwards, so the backward pass is one more scan
  instead of the autodiff of hundreds of unrolled steps.
- `associative_log_scan`: `keras.ops.associative_scan` (a Blelloch-style tree, portable to
  every Keras backend) on log-space pairs `(log a, log b)`, the paper's formulation.
- `logcumsumexp_scan`: the paper's "Heinsen" scan, `cumsum(log a)` and
  `cumulative_logsumexp(log b - cumsum(log a))`, TensorFlow-native. In float32 it loses
  precision on long chunks (cumsum(log a) grows like -T, and adding it back cancels digits:
  max error 4e-3 at T=4096 measured), so it accumulates in float64.

Why the default is linear, not log space: the paper moves to log space so that its
cumulative-product formulation does not divide by a vanishing prod(a). A blocked or tree scan
never divides: with 0 < a < 1 the products only underflow harmlessly to 0 and h stays a
convex combination of the inputs, so linear space is already stable at any length, and it
was the fastest and the most accurate of the three here (docs/RESULTS.md).

The log-space scans need b > 0 (they take log b); minLSTM/minGRU guarantee it with the
positive candidate g(x). `h0` never goes through a logarithm in any of the three: it enters
as `prod(a) * h0 + h_from_zero`, so a carried state of any sign (zeros after a lane reset,
or a state set by hand) is handled exactly.
"""

from __future__ import annotations

import functools

from keras import ops

SCAN_METHODS = ("blocked", "associative", "logcumsumexp")

# Block length of the blocked scan: a longer block means fewer recursion levels but a longer
# unrolled loop (graph size and trace time grow with it); 64 measured best at 512-32768 steps.
DEFAULT_BLOCK = 64

# `fused_projected_scan` runs its lanes as this many independent groups, each group's loops one
# XLA program: TensorFlow runs the groups' programs side by side on its inter-op threads.
# Measured on a 2-core CPU (same process, interleaved), 2 groups took a minLSTM train step at
# 4096 steps from 108 to 97 ms (medians of 15), 4 groups to 93 ms and 8 to 96 ms.
LANE_GROUPS = 2


def sequential_scan(a, b, h0):
    """The reference loop: h_t = a_t * h_{t-1} + b_t, one step after another.

    Used for streaming (one or a few steps at a time) and as the ground truth in tests.
    Works with an unknown (symbolic) number of steps.

    Args:
        a, b: `(batch, steps, units)`.
        h0: `(batch, units)`.

    Returns:
        `h` of shape `(batch, steps, units)`.
    """
    a_time_major = ops.transpose(a, (1, 0, 2))
    b_time_major = ops.transpose(b, (1, 0, 2))

    def step(h, ab):
        a_t, b_t = ab
        h = a_t * h + b_t
        return h, h

    _, hs = ops.scan(step, h0, (a_time_major, b_time_major))
    return ops.transpose(hs, (1, 0, 2))


def _blocked_scan(a, b, h0, block: int, reverse: bool):
    """`blocked_scan` without the hand-written gradient; `reverse` runs time backwards."""
    steps = a.shape[1]
    if steps <= block:
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        a_steps, b_steps = ops.unstack(a, axis=1), ops.unstack(b, axis=1)
        outputs = [None] * steps
        h = h0
        for t in order:
            h = a_steps[t] * h + b_steps[t]
            outputs[t] = h
        return ops.stack(outputs, axis=1)

    blocks = -(-steps // block)
    pad = blocks * block - steps
    if pad:
        # a = 1, b = 0 is the identity step; in reverse mode the padding must come first.
        where = [[0, 0], [pad, 0] if reverse else [0, pad], [0, 0]]
        a = ops.pad(a, where, constant_values=1.0)
        b = ops.pad(b, where)
    units = a.shape[-1]
    a_blocks = ops.reshape(a, (-1, blocks, block, units))
    b_blocks = ops.reshape(b, (-1, blocks, block, units))

    # Level 1: every block scanned from zero at once; `decay` is the running product of a.
    a_steps, b_steps = ops.unstack(a_blocks, axis=2), ops.unstack(b_blocks, axis=2)
    order = list(range(block - 1, -1, -1)) if reverse else list(range(block))
    local, decay = [None] * block, [None] * block
    first = order[0]
    local[first], decay[first] = b_steps[first], a_steps[first]
    previous = first
    for position in order[1:]:
        local[position] = a_steps[position] * local[previous] + b_steps[position]
        decay[position] = a_steps[position] * decay[previous]
        previous = position
    block_end_h, block_end_decay = local[order[-1]], decay[order[-1]]

    # Level 2: the state entering each block, a scan over blocks of the same recurrence.
    exit_state = _blocked_scan(block_end_decay, block_end_h, h0, block, reverse)
    if reverse:
        entry_state = ops.concatenate([exit_state[:, 1:], h0[:, None]], axis=1)
    else:
        entry_state = ops.concatenate([h0[:, None], exit_state[:, :-1]], axis=1)

    h = ops.stack(local, axis=2) + ops.stack(decay, axis=2) * entry_state[:, :, None]
    h = ops.reshape(h, (-1, blocks * block, units))
    return h[:, pad:] if reverse else h[:, :steps]


def blocked_scan(a, b, h0, block: int = DEFAULT_BLOCK):
    """Parallel scan of h_t = a_t * h_{t-1} + b_t in linear space, blocked; see the module doc.

    Args:
        a: `(batch, steps, units)`, the decay; stable for 0 <= a <= 1 (any real a works,
            but |a| > 1 over long chunks overflows, as it would in any formulation).
        b: `(batch, steps, units)`, the input.
        h0: `(batch, units)`, the state before the first step.
        block: steps per block (>= 2).

    Returns:
        `h`, `(batch, steps, units)`; `h[:, -1]` is the state to carry to the next chunk.

    The number of steps must be known when the graph is built (it is unrolled).
    """
    if a.shape[1] is None:
        raise ValueError("blocked_scan needs a static number of steps; got None (use sequential_scan).")
    return _blocked_scan_with_gradient(a, b, h0, block)


def _blocked_scan_with_gradient(a, b, h0, block):
    @ops.custom_gradient
    def scan(a, b, h0):
        h = _blocked_scan(a, b, h0, block, reverse=False)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # Adjoint: g_t = dL/dh_t + a_{t+1} g_{t+1}, a reverse scan with the same decays.
            a_next = ops.concatenate([a[:, 1:], ops.zeros_like(a[:, :1])], axis=1)
            g = _blocked_scan(a_next, upstream, ops.zeros_like(h0), block, reverse=True)
            h_previous = ops.concatenate([h0[:, None], h[:, :-1]], axis=1)
            return g * h_previous, g, a[:, 0] * g[:, 0]

        return h, grad

    return scan(a, b, h0)


def associative_log_scan(log_a, log_b, h0):
    """Parallel scan in log space with `keras.ops.associative_scan` (any Keras backend).

    Args:
        log_a, log_b: `(batch, steps, units)`, logarithms of a (> 0) and b (> 0).
        h0: `(batch, units)`, any sign.

    Returns:
        `h`, `(batch, steps, units)`.
    """

    def combine(earlier, later):
        log_a_earlier, log_b_earlier = earlier
        log_a_later, log_b_later = later
        return log_a_earlier + log_a_later, ops.logaddexp(log_a_later + log_b_earlier, log_b_later)

    log_decay, log_h_from_zero = ops.associative_scan(combine, (log_a, log_b), axis=1)
    h = ops.exp(log_decay) * h0[:, None] + ops.exp(log_h_from_zero)
    # TensorFlow's associative_scan loses the static shape in its interleaving reshapes.
    return ops.reshape(h, (-1,) + tuple(log_a.shape[1:])) if None not in log_a.shape[1:] else h


def logcumsumexp_scan(log_a, log_b, h0):
    """The paper's log-space scan via cumulative sums (TensorFlow-native ops, float64 inside).

    Args and returns as `associative_log_scan`.
    """
    import tensorflow as tf  # cumulative_logsumexp has no keras.ops equivalent

    dtype = log_a.dtype
    log_a = tf.cast(log_a, tf.float64)
    log_b = tf.cast(log_b, tf.float64)
    log_decay = tf.math.cumsum(log_a, axis=1)
    log_h_from_zero = log_decay + tf.math.cumulative_logsumexp(log_b - log_decay, axis=1)
    h = tf.exp(log_decay) * tf.cast(h0, tf.float64)[:, None] + tf.exp(log_h_from_zero)
    return tf.cast(h, dtype)



def fused_projected_scan(
    x,
    kernel,
    bias,
    h0,
    coefficients,
    sub_chunk: int = 256,
    block: int = DEFAULT_BLOCK,
    coefficient_gradient=None,
    jit_compile: bool = False,
):
    """h_t = a_t * h_{t-1} + b_t with `(a, b) = coefficients(x @ kernel + bias)`, cache-sized.

    The same function as projecting the whole chunk, computing the coefficients and calling
    `blocked_scan`, but it walks through the chunk `sub_chunk` steps at a time (a loop, one
    sub-chunk after another, the state carried) and keeps nothing but `x` and `h` for the
    backward pass, which runs the sub-chunks in reverse and recomputes the projections and
    coefficients of each. On a CPU this is what makes long chunks fast: the whole-chunk version
    streams several `(batch, steps, 3 * units)` intermediates through main memory (and keeps
    them for the backward pass): measured on a 2-core CPU, its cost per step at 4096 steps was
    several times its cost per step at 512. Here every intermediate fits in cache.
    TensorFlow only (a nested `GradientTape` without `coefficient_gradient`).

    The lanes are processed in `LANE_GROUPS` independent groups (they share nothing but the
    weights), which lets TensorFlow run them on different cores.

    The bias enters as one more row of the kernel against a column of ones appended to `x`,
    so its gradient comes out of the kernel's matrix product instead of a separate reduction.

    Args:
        x: `(batch, steps, features)`, static `steps` and `features`.
        kernel: `(features, k * units)`; bias: `(k * units,)` or `None`.
        h0: `(batch, units)`.
        coefficients: maps the projections `(batch, s, k * units)` to `(a, b)`, each
            `(batch, s, units)`, elementwise along time.
        sub_chunk: steps per sub-chunk.
        coefficient_gradient: optional `(projections, a, grad_a, grad_b) -> grad_projections`,
            the closed-form gradient of `coefficients`; without it the backward pass
            differentiates `coefficients` with a `GradientTape` (several times the elementwise
            ops).
        jit_compile: compile the whole forward pass (the loop over sub-chunks included) and
            the whole backward pass as two XLA programs. Measured on a 2-core CPU, that about
            halved a minLSTM train step against compiling each sub-chunk alone inside a
            `tf.scan`, which in turn about halved it against no XLA (docs/RESULTS.md): the
            `tf.scan` version spent a third of its time outside the sub-chunks' arithmetic
            (transposes into and out of the scan's time-major pieces, one launch per piece).
            Without it the loop is a `tf.scan` of uncompiled sub-chunks.

    Returns:
        `h`, `(batch, steps, units)`.
    """
    import tensorflow as tf

    steps = x.shape[1]
    count = -(-steps // sub_chunk)
    padded = count * sub_chunk
    has_bias = bias is not None
    forward_loop, backward_loop = _sub_chunk_loops(coefficients, coefficient_gradient, sub_chunk, block, jit_compile)

    @tf.custom_gradient
    def run(x, kernel, *maybe_bias_and_h0):
        *maybe_bias, h0 = maybe_bias_and_h0
        # Padding at the end is harmless: it comes after every real step and gets no gradient.
        if has_bias:
            x_extended = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)
            kernel_extended = tf.concat([kernel, maybe_bias[0][None]], axis=0)
        else:
            x_extended, kernel_extended = x, kernel
        x_extended = tf.pad(x_extended, [[0, 0], [0, padded - steps], [0, 0]])
        groups = _lane_groups(x.shape[0])
        # `grad` below is the gradient. In eager mode `tf.custom_gradient` runs this forward pass
        # under the caller's tape, which would make TensorFlow differentiate the compiled loop
        # too: it has no gradient (`XlaDynamicUpdateSlice`) and the call fails. Inside a
        # `tf.function` the forward pass is not recorded, so this changes nothing there.
        loop_x, loop_kernel, loop_h0 = (tf.stop_gradient(tensor) for tensor in (x_extended, kernel_extended, h0))
        h = tf.concat([forward_loop(loop_x[lanes], loop_kernel, loop_h0[lanes]) for lanes in groups], axis=0)

        def grad(upstream):
            upstream = tf.pad(upstream, [[0, 0], [0, padded - steps], [0, 0]])
            grads = [
                backward_loop(x_extended[lanes], h[lanes], h0[lanes], upstream[lanes], kernel_extended)
                for lanes in groups
            ]
            h0_grad = tf.concat([group[0] for group in grads], axis=0)
            kernel_grad = tf.add_n([group[1] for group in grads])
            x_grad = tf.concat([group[2] for group in grads], axis=0)
            if not has_bias:
                return x_grad[:, :steps], kernel_grad, h0_grad
            return x_grad[:, :steps, :-1], kernel_grad[:-1], kernel_grad[-1], h0_grad

        return h[:, :steps], grad

    return run(x, kernel, *([bias] if has_bias else []), h0)


def _lane_groups(batch):
    """Slices cutting the lanes into up to `LANE_GROUPS` independent groups (one if unknown)."""
    groups = 1 if batch is None else max(1, min(LANE_GROUPS, batch))
    bounds = [round(index * batch / groups) for index in range(groups + 1)] if batch else [None, None]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


@functools.lru_cache(maxsize=64)
def _sub_chunk_loops(coefficients, coefficient_gradient, sub_chunk: int, block: int, jit_compile: bool):
    """The forward and backward loops of `fused_projected_scan` over sub-chunks.

    `forward(x, kernel, h0) -> h` and `backward(x, h, h0, upstream, kernel) -> (h0_grad,
    kernel_grad, x_grad)`, on a padded `x` (a whole number of sub-chunks) whose bias, if any,
    is already a column of ones in `x` and a row of `kernel`. Cached, so that an XLA-compiled
    pair is compiled once per class and input shape, not at every call or trace (a compilation
    takes seconds).
    """
    import tensorflow as tf

    def project(x_piece, kernel):
        # One 2-D matrix product: a 3-D `matmul` would be a batched product with the kernel
        # broadcast over the batch, which XLA runs as `batch` small products.
        flat = tf.matmul(tf.reshape(x_piece, (-1, x_piece.shape[-1])), kernel)
        return tf.reshape(flat, (-1, x_piece.shape[1], kernel.shape[-1]))

    def forward_math(x_piece, kernel, h_previous):
        a, b = coefficients(project(x_piece, kernel))
        return _blocked_scan(a, b, h_previous, block, reverse=False)

    def backward_math(x_piece, h_piece, entry, upstream_piece, tail, kernel):
        projections = project(x_piece, kernel)
        if coefficient_gradient is None:
            with tf.GradientTape() as tape:
                tape.watch(projections)
                a, b = coefficients(projections)
        else:
            a, b = coefficients(projections)
        # Adjoint of the recurrence: g_t = dL/dh_t + a_{t+1} g_{t+1}; `tail` is the
        # a_{t+1} g_{t+1} of the sub-chunk after this one.
        a_next = tf.concat([a[:, 1:], tf.ones_like(a[:, :1])], axis=1)
        g = _blocked_scan(a_next, upstream_piece, tail, block, reverse=True)
        h_previous = tf.concat([entry[:, None], h_piece[:, :-1]], axis=1)
        if coefficient_gradient is None:
            projection_grad = tape.gradient([a, b], projections, output_gradients=[g * h_previous, g])
        else:
            projection_grad = coefficient_gradient(projections, a, g * h_previous, g)
        flat_grad = tf.reshape(projection_grad, (-1, kernel.shape[-1]))
        kernel_grad = tf.matmul(tf.reshape(x_piece, (-1, x_piece.shape[-1])), flat_grad, transpose_a=True)
        x_grad = tf.reshape(tf.matmul(flat_grad, kernel, transpose_b=True), tf.shape(x_piece))
        return a[:, 0] * g[:, 0], kernel_grad, x_grad

    if jit_compile:
        return _compiled_loops(forward_math, backward_math, sub_chunk)
    return _scan_loops(forward_math, backward_math, sub_chunk)


def _compiled_loops(forward_math, backward_math, sub_chunk: int):
    """Both loops as XLA programs: `tf.while_loop`s writing their pieces in place."""
    import tensorflow as tf

    def piece(tensor, index):
        return tf.slice(tensor, [0, index * sub_chunk, 0], [tensor.shape[0], sub_chunk, tensor.shape[2]])

    @tf.function(jit_compile=True)
    def forward(x, kernel, h0):
        count = x.shape[1] // sub_chunk

        def body(index, h_previous, h):
            h_piece = forward_math(piece(x, index), kernel, h_previous)
            return index + 1, h_piece[:, -1], ops.slice_update(h, [0, index * sub_chunk, 0], h_piece)

        h = tf.zeros((x.shape[0], x.shape[1], h0.shape[-1]), h0.dtype)
        _, _, h = tf.while_loop(lambda index, *_: index < count, body, (0, h0, h))
        return h

    @tf.function(jit_compile=True)
    def backward(x, h, h0, upstream, kernel):
        count = x.shape[1] // sub_chunk

        def body(index, tail, kernel_grad, x_grad):
            # The state entering this piece: h0 for the first, else the last h of the one before.
            entry = h0 if count == 1 else tf.where(index > 0, h[:, tf.maximum(index * sub_chunk - 1, 0)], h0)
            tail, kernel_grad_piece, x_grad_piece = backward_math(
                piece(x, index), piece(h, index), entry, piece(upstream, index), tail, kernel
            )
            x_grad = ops.slice_update(x_grad, [0, index * sub_chunk, 0], x_grad_piece)
            return index - 1, tail, kernel_grad + kernel_grad_piece, x_grad

        initial = (count - 1, tf.zeros_like(h0), tf.zeros_like(kernel), tf.zeros_like(x))
        _, h0_grad, kernel_grad, x_grad = tf.while_loop(lambda index, *_: index >= 0, body, initial)
        return h0_grad, kernel_grad, x_grad

    return forward, backward


def _scan_loops(forward_math, backward_math, sub_chunk: int):
    """Both loops as `tf.scan`s of uncompiled pieces (for when XLA is unavailable)."""
    import tensorflow as tf

    def split_time(tensor):  # (batch, padded, n) -> (count, batch, sub_chunk, n)
        tensor = tf.reshape(tensor, (-1, tensor.shape[1] // sub_chunk, sub_chunk, tensor.shape[-1]))
        return tf.transpose(tensor, (1, 0, 2, 3))

    def join_time(tensor):  # inverse of split_time
        tensor = tf.transpose(tensor, (1, 0, 2, 3))
        return tf.reshape(tensor, (-1, tensor.shape[1] * sub_chunk, tensor.shape[-1]))

    def forward(x, kernel, h0):
        def forward_piece(carried, x_piece):
            h = forward_math(x_piece, kernel, carried[0])
            return h[:, -1], h

        _, h_pieces = tf.scan(
            forward_piece,
            split_time(x),
            initializer=(h0, tf.zeros((tf.shape(x)[0], sub_chunk, h0.shape[-1]), h0.dtype)),
            parallel_iterations=1,
        )
        return join_time(h_pieces)

    def backward(x, h, h0, upstream, kernel):
        h_pieces = split_time(h)
        entry_states = tf.concat([h0[None], h_pieces[:-1, :, -1]], axis=0)

        def backward_piece(carried, elements):
            tail, kernel_grad, _ = carried
            x_piece, h_piece, entry, upstream_piece = elements
            tail, kernel_grad_piece, x_grad = backward_math(x_piece, h_piece, entry, upstream_piece, tail, kernel)
            return tail, kernel_grad + kernel_grad_piece, x_grad

        initial = (tf.zeros_like(h0), tf.zeros_like(kernel), tf.zeros((tf.shape(x)[0], sub_chunk, x.shape[-1]), x.dtype))
        h0_grad, kernel_grad, x_grad_pieces = tf.scan(
            backward_piece,
            (split_time(x), h_pieces, entry_states, split_time(upstream)),
            initializer=initial,
            parallel_iterations=1,
            reverse=True,
        )
        return h0_grad[0], kernel_grad[0], join_time(x_grad_pieces)

    return forward, backward
